# The body of every /etc/init.d script on a lab device (sourced).
#
# Non-critical services move their memory in and out of MemAvailable when
# stopped or started; critical services (the ones an upgrade must not stop)
# accept every action and do nothing.

. /lib/lab/common.sh

lab_usage() {
	echo "Syntax: /etc/init.d/$1 [command]"
	echo
	echo "Available commands:"
	echo "	start	Start the service"
	echo "	stop	Stop the service"
	echo "	restart	Restart the service"
	echo "	reload	Reload configuration files (or restart if service does not implement reload)"
	echo "	enable	Enable service autostart"
	echo "	disable	Disable service autostart"
	echo "	enabled	Check if service is started on boot"
	echo "	running	Check if service is running"
	echo "	status	Service status"
}

# lab_service NAME ACTION: a non-critical service.
lab_service() {
	name=$1
	action=$2
	[ -d /etc/lab-disabled ] || mkdir -p /etc/lab-disabled
	case "$action" in
	start|restart|reload)
		rm -f "$LAB_STATE/stopped/$name"
		;;
	stop)
		: > "$LAB_STATE/stopped/$name"
		;;
	enable) rm -f "/etc/lab-disabled/$name" ;;
	disable) : > "/etc/lab-disabled/$name" ;;
	enabled) [ ! -e "/etc/lab-disabled/$name" ] ;;
	running) [ ! -e "$LAB_STATE/stopped/$name" ] ;;
	status)
		if [ -e "$LAB_STATE/stopped/$name" ]; then
			echo "inactive"
			exit 3
		fi
		echo "running"
		;;
	*) lab_usage "$name"; exit 1 ;;
	esac
}

# lab_critical_service NAME ACTION: a service an upgrade must leave alone.
lab_critical_service() {
	case "$2" in
	start|stop|restart|reload|enable|disable|enabled|running) : ;;
	status) echo "running" ;;
	*) lab_usage "$1"; exit 1 ;;
	esac
}
