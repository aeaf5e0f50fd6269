#!/bin/sh
# /sbin/sysupgrade of a lab device: checks an image the way OpenWrt's does
# and, when told to flash, hands the image's release to the lab and reboots.
#
# The image's fwtool metadata is read from its tail: 16-byte trailers
# ("FWx0", crc32, type, size) walked from the end, signatures (type 0)
# skipped, metadata (type 1) being an 8-byte header and JSON. Flashing means:
# record the request in /lab/state/flash.request, then end every Dropbear
# process, which ends the sandbox; the lab brings the device back.
#
# FIXME: the trailer's CRC is not verified (BusyBox has no zlib-style crc32),
# so an image corrupted after upload passes here; callers that compare the
# sha256 after upload, as upgraders should, are not affected.

. /lib/lab/common.sh
[ -f "$LAB_STATE/faults.env" ] && . "$LAB_STATE/faults.env"

VERBOSE=1
KEEP_CONFIG=1
FORCE=0
TEST=0
IGNORE_MINOR=0

# Every run is recorded for the lab: its arguments separated by \037.
{
	for arg in "$@"; do printf '%s\037' "$arg"; done
	printf '\n'
} >> "$LAB_STATE/sysupgrade_calls"

v() {
	[ "$VERBOSE" -ge 1 ] && echo "$*" >&2
	return 0
}

usage() {
	cat >&2 <<USAGE
Usage: $0 [<upgrade-option>...] <image file or URL>
       $0 [-q] [-i] [-c] [-u] [-o] [-k] [-p] <backup-command> <file>

upgrade-option:
	-f <config>  restore configuration from .tar.gz (file or url)
	-i           interactive mode
	-c           attempt to preserve all changed files in /etc/
	-o           attempt to preserve all changed files in /, except those
	             from packages but including changed confs.
	-u           skip from backup files that are equal to those in /rom
	-n           do not save configuration over reflash
	-p           do not attempt to restore the partition table after flash.
	-k           include in backup a list of current installed packages at
	             /etc/backup/installed_packages.txt
	-T | --test
	             Verify image and config .tar.gz but do not actually flash.
	-F | --force
	             Flash image even if image checks fail, this is dangerous!
	--ignore-minor-compat-version
	             Flash image even if the minor compat version is incompatible.
	-q           less verbose
	-v           more verbose
	-h | --help  display this help
USAGE
}

while [ -n "$1" ]; do
	case "$1" in
	-c|-o|-u|-p|-k|-i) ;;
	-n) KEEP_CONFIG=0 ;;
	-F|--force) FORCE=1 ;;
	-T|--test) TEST=1 ;;
	--ignore-minor-compat-version) IGNORE_MINOR=1 ;;
	-v) VERBOSE=$((VERBOSE + 1)) ;;
	-q) VERBOSE=$((VERBOSE - 1)) ;;
	-h|--help) usage; exit 0 ;;
	-*) echo "Invalid option: $1" >&2; usage; exit 1 ;;
	*) break ;;
	esac
	shift
done

IMAGE=$1
if [ -z "$IMAGE" ] || [ $# -gt 1 ]; then
	usage
	exit 1
fi
if [ ! -f "$IMAGE" ]; then
	echo "Image file not found." >&2
	exit 1
fi

# Reads LEN bytes at OFFSET of the image.
image_bytes() {
	dd if="$IMAGE" bs=1 skip="$1" count="$2" 2>/dev/null
}

# Sets METADATA to the image's metadata JSON on one line; fails without one.
read_metadata() {
	end=$(stat -c %s "$IMAGE")
	blocks=0
	while [ "$blocks" -lt 8 ] && [ "$end" -ge 16 ]; do
		trailer=$(image_bytes $((end - 16)) 16 | od -An -v -tx1 | tr -d ' \n')
		[ "$(echo "$trailer" | cut -c1-8)" = "46577830" ] || return 1
		type=$(echo "$trailer" | cut -c17-18)
		size=$((0x$(echo "$trailer" | cut -c25-32)))
		[ "$size" -ge 16 ] && [ "$size" -le "$end" ] || return 1
		case "$type" in
		01)
			[ "$size" -ge 24 ] || return 1
			METADATA=$(image_bytes $((end - size + 8)) $((size - 24)) | tr -d '\n')
			return 0
			;;
		00) end=$((end - size)) ;;
		*) return 1 ;;
		esac
		blocks=$((blocks + 1))
	done
	return 1
}

# Prints the string value of KEY in the metadata (the innermost one wins,
# which is what is wanted for "version").
json_string() {
	printf '%s' "$METADATA" |
		sed -n 's/.*"'"$1"'"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p'
}

# Prints the supported devices, one a line.
supported_devices() {
	printf '%s' "$METADATA" |
		sed -n 's/.*"supported_devices"[[:space:]]*:[[:space:]]*\[\([^]]*\)\].*/\1/p' |
		grep -o '"[^"]*"' | tr -d '"'
}

check_image() {
	if ! read_metadata; then
		v "Image metadata not present"
		[ "$FORCE" -eq 1 ] ||
			v "Use sysupgrade -F to override this check when downgrading or flashing to vendor firmware"
		return 1
	fi

	IMAGE_COMPAT=$(json_string compat_version)
	[ -n "$IMAGE_COMPAT" ] || IMAGE_COMPAT=1.0
	IMAGE_COMPAT_MESSAGE=$(json_string compat_message)
	IMAGE_DIST=$(json_string dist)
	IMAGE_VERSION=$(json_string version)
	IMAGE_REVISION=$(json_string revision)
	IMAGE_TARGET=$(json_string target)

	supported=0
	board_underscore=$(echo "$BOARD_NAME" | tr ',' '_')
	for device in $(supported_devices); do
		if [ "$device" = "$BOARD_NAME" ] || [ "$device" = "$board_underscore" ]; then
			supported=1
		fi
	done
	if [ "$supported" -eq 0 ]; then
		v "Device $BOARD_NAME not supported by this image"
		v "Supported devices: $(supported_devices | tr '\n' ' ')"
		return 1
	fi

	if [ "$IMAGE_COMPAT" != "$COMPAT_VERSION" ]; then
		device_major=${COMPAT_VERSION%%.*}
		image_major=${IMAGE_COMPAT%%.*}
		device_minor=${COMPAT_VERSION#*.}
		image_minor=${IMAGE_COMPAT#*.}
		if [ "$device_major" != "$image_major" ]; then
			if [ "$KEEP_CONFIG" -eq 1 ]; then
				change="$COMPAT_VERSION->$IMAGE_COMPAT"
				v "The device is supported, but the config is incompatible" \
					"to the new image ($change). Please upgrade without" \
					"keeping config (sysupgrade -n)."
				[ -n "$IMAGE_COMPAT_MESSAGE" ] && v "$IMAGE_COMPAT_MESSAGE"
				# Keeping a configuration that cannot be migrated is
				# refused even with -F, as OpenWrt does.
				CONFIG_INCOMPATIBLE=1
				return 1
			fi
		elif [ "$image_minor" -lt "$device_minor" ] 2>/dev/null; then
			if [ "$IGNORE_MINOR" -eq 0 ]; then
				change="$COMPAT_VERSION->$IMAGE_COMPAT"
				v "The device is supported, but this image is incompatible" \
					"for sysupgrade based on the image version ($change)."
				[ -n "$IMAGE_COMPAT_MESSAGE" ] && v "$IMAGE_COMPAT_MESSAGE"
				return 1
			fi
		fi
	fi

	if [ "${TEST_FAILS:-0}" = 1 ]; then
		v "Image check 'platform_check_image' failed."
		return 1
	fi
	return 0
}

HAS_METADATA=0
CONFIG_INCOMPATIBLE=0
if check_image; then
	HAS_METADATA=1
else
	[ -n "$METADATA" ] && HAS_METADATA=1
	if [ "$FORCE" -eq 1 ] && [ "$CONFIG_INCOMPATIBLE" -eq 0 ] && [ "${TEST_FAILS:-0}" != 1 ]; then
		v "Image check failed but --force given - will update anyway!"
	else
		v "Image check failed."
		exit 1
	fi
fi

[ "$TEST" -eq 1 ] && exit 0

if [ "${REFUSES:-0}" = 1 ]; then
	v "Failed to create the configuration backup."
	exit 1
fi

if [ "$KEEP_CONFIG" -eq 1 ]; then
	v "Saving config files..."
fi

{
	echo "keep_config=$KEEP_CONFIG"
	echo "metadata=$HAS_METADATA"
	echo "dist=$IMAGE_DIST"
	echo "version=$IMAGE_VERSION"
	echo "revision=$IMAGE_REVISION"
	echo "target=$IMAGE_TARGET"
	echo "compat_version=$IMAGE_COMPAT"
} > "$LAB_STATE/flash.request.tmp"
mv "$LAB_STATE/flash.request.tmp" "$LAB_STATE/flash.request"

v "Commencing upgrade. Closing all shell sessions."

if [ "${EXITS_NONZERO:-0}" = 1 ]; then
	# The session ends with a failure status, yet the flash goes on.
	( sleep 1; killall dropbear ) </dev/null >/dev/null 2>&1 &
	exit 1
fi

# Give the message time to reach the client before the sessions close.
sleep 1
killall dropbear
sleep 5
