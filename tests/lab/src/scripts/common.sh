# Helpers shared by the scripts of a lab device (sourced, not run).
#
# The host writes /lab/state/boot.env before every boot: the device's board,
# release and memory figures. Memory is modelled, not measured: MemAvailable
# is the spec's available figure, plus the page cache once it has been
# dropped, plus the memory of every non-critical service that was stopped.

LAB_STATE=/lab/state
. "$LAB_STATE/boot.env"

# A write to /proc/sys/vm/drop_caches lands in a plain file bound over it;
# the cache counts as freed (once per boot) from the next look at memory on,
# which every reader of memory makes through lab_memory.
lab_apply_drop_caches() {
	if [ -s "$LAB_STATE/drop_caches" ]; then
		: > "$LAB_STATE/cache_dropped"
		: > "$LAB_STATE/drop_caches"
	fi
}

# Sets MEM_TOTAL, MEM_AVAILABLE, MEM_FREE and MEM_CACHED, in KiB.
lab_memory() {
	lab_apply_drop_caches
	freed=0
	while read -r service kib; do
		[ -e "$LAB_STATE/stopped/$service" ] && freed=$((freed + kib))
	done < "$LAB_STATE/services"
	MEM_TOTAL=$TOTAL_KIB
	MEM_CACHED=$CACHE_KIB
	if [ -e "$LAB_STATE/cache_dropped" ]; then
		MEM_CACHED=0
		freed=$((freed + CACHE_KIB))
	fi
	MEM_AVAILABLE=$((AVAILABLE_KIB + freed))
	MEM_FREE=$MEM_AVAILABLE
}

# Prints the device's /proc/meminfo in one printf (one write).
lab_meminfo() {
	lab_memory
	printf '%-15s %8d kB\n' \
		MemTotal: "$MEM_TOTAL" \
		MemFree: "$MEM_FREE" \
		MemAvailable: "$MEM_AVAILABLE" \
		Buffers: 2048 \
		Cached: "$MEM_CACHED" \
		SwapCached: 0 \
		Active: $((MEM_TOTAL / 8)) \
		Inactive: $((MEM_TOTAL / 16)) \
		SwapTotal: 0 \
		SwapFree: 0 \
		Shmem: 96 \
		Slab: 8192
}

# Seconds since this device booted (the host's clock, the device's boot).
lab_uptime() {
	echo $(($(date +%s) - BOOT_TIME))
}
