#!/bin/sh
# The first process of a lab device's sandbox.
#
# It serves the device's /proc/meminfo, a FIFO bound over the real one, so
# that every reader gets figures computed when it opens the file (a service
# stopped or caches dropped a moment before are counted), and then becomes
# Dropbear. When Dropbear ends, the sandbox ends: that is a reboot.

. /lib/lab/common.sh

(
	while :; do
		lab_meminfo > /proc/meminfo
		# The pause lets the last reader see the end of the file before
		# the next open; without it a slow reader would get a second copy.
		sleep 0.05
	done
) </dev/null 2>/dev/null &
exec /usr/sbin/dropbear "$@"
