#!/bin/sh
# /bin/ubus of a lab device: answers the calls an upgrader makes, with JSON
# shaped like OpenWrt's (`ubus call system board`, `ubus call system info`).
. /lib/lab/common.sh

board() {
	printf '{\n'
	printf '\t"kernel": "%s",\n' "$KERNEL"
	printf '\t"hostname": "%s",\n' "$(cat /proc/sys/kernel/hostname)"
	printf '\t"system": "%s",\n' "$SYSTEM"
	printf '\t"model": "%s",\n' "$MODEL"
	printf '\t"board_name": "%s",\n' "$BOARD_NAME"
	printf '\t"rootfs_type": "%s",\n' "$ROOTFS_TYPE"
	printf '\t"release": {\n'
	printf '\t\t"distribution": "%s",\n' "$DIST"
	printf '\t\t"version": "%s",\n' "$VERSION"
	printf '\t\t"revision": "%s",\n' "$REVISION"
	printf '\t\t"target": "%s",\n' "$TARGET"
	printf '\t\t"description": "%s %s %s"\n' "$DIST" "$VERSION" "$REVISION"
	printf '\t}\n'
	printf '}\n'
}

info() {
	lab_memory
	printf '{\n'
	printf '\t"localtime": %d,\n' "$(date +%s)"
	printf '\t"uptime": %d,\n' "$(lab_uptime)"
	printf '\t"load": [\n\t\t0,\n\t\t0,\n\t\t0\n\t],\n'
	printf '\t"memory": {\n'
	printf '\t\t"total": %d,\n' $((MEM_TOTAL * 1024))
	printf '\t\t"free": %d,\n' $((MEM_FREE * 1024))
	printf '\t\t"shared": %d,\n' 98304
	printf '\t\t"buffered": %d,\n' 2097152
	printf '\t\t"available": %d,\n' $((MEM_AVAILABLE * 1024))
	printf '\t\t"cached": %d\n' $((MEM_CACHED * 1024))
	printf '\t},\n'
	printf '\t"swap": {\n\t\t"total": 0,\n\t\t"free": 0\n\t}\n'
	printf '}\n'
}

case "$1 $2 $3" in
"call system board") board ;;
"call system info") info ;;
"list  "|"list system ") echo "system" ;;
*)
	echo "Command failed: Not found" >&2
	exit 4
	;;
esac
