#!/bin/sh
# Which of the unit's capabilities tierd really needs: runs tierd (as root, with
# no_new_privs) with the unit's bounding set, then with each capability dropped in
# turn, then with none, and records per run: the sampling backends that came up,
# whether `tierctl migrate` moved a 64 MiB process (root-owned, full capabilities, as
# most targets are) and how many THPs moved as one unit. RESULT caps_<run>_* lines;
# docs/operations.md carries the table. Needs --extra-bin /usr/bin/setpriv and the
# unit (--extra-file systemd/tierd.service:/tierd/etc/tierd.service).
# tierd-timeout: 600
# shellcheck source=../lib.sh
. /tierd/scenarios/lib.sh

unit=/tierd/etc/tierd.service
[ -r $unit ] || cannot_run "no unit: --extra-file systemd/tierd.service:/tierd/etc/tierd.service"
/tierd/bin/setpriv --help 2>&1 | grep -q -- --bounding-set || cannot_run "util-linux setpriv missing (--extra-bin /usr/bin/setpriv)"
caps=$(sed -n 's/^CapabilityBoundingSet=//p' $unit)
mkdir -p /run/tierd
# 01 leaves a config behind when it fails; run on the built-in defaults.
rm -f /etc/tierd/tierd.toml

setpriv_caps() { # setpriv_caps CAP... -> +sys_nice,+bpf (or empty)
	echo "$@" | tr ' ' '\n' | awk 'NF { sub(/^CAP_/, ""); printf "%s+%s", s, tolower($0); s = "," }'
}

run_with() { # run_with LABEL CAP...
	label=$1
	shift
	bset=-all
	[ $# -eq 0 ] || bset="-all,$(setpriv_caps "$@")"
	echo "=== $label: bounding set $bset"
	rm -f /run/tierd/tierd.sock # see start_tierd
	RUST_LOG=info /tierd/bin/setpriv --no-new-privs --bounding-set "$bset" tierd >"/out/tierd-caps-$label.log" 2>&1 &
	TIERD_PID=$!
	wait_for_socket /run/tierd/tierd.sock 30
	echo "CapEff: $(awk '$1 == "CapEff:" { print $2 }' /proc/$TIERD_PID/status)"

	start_memhold /tmp/mh.out --mb 64 --huge
	mpid=$MEMHOLD_PID range=$MEMHOLD_RANGE
	rc_manage=0
	tierctl manage --pid $mpid --policy off >/tmp/manage.txt 2>&1 || rc_manage=$?
	echo "manage rc=$rc_manage: $(cat /tmp/manage.txt)"
	sleep 2
	tierctl status --json >/tmp/s.json
	backends=$(tierctl status | awk '$2 == "on" { printf "%s%s", s, $1; s = "," }')
	tierctl status | sed -n '/^sampling/,/^  [a-z-]* *o/p' | head -n 6
	rc=0
	tierctl migrate --pid $mpid --to 1 --range "$range" --json >/tmp/m.json 2>/tmp/m.err || rc=$?
	if [ $rc -eq 0 ]; then
		moved=$(jget moved_pages </tmp/m.json)
		req=$(jget requested_pages </tmp/m.json)
		huge=$(jget huge_pages </tmp/m.json)
		pct=$((moved * 100 / req))
		echo "migrate: $(tr -d '\n ' </tmp/m.json)"
	else
		pct=0 huge=0
		echo "migrate refused (rc=$rc): $(cat /tmp/m.err)"
	fi
	manage_rc=$rc_manage
	result "caps_${label}_manage_rc" "$manage_rc"
	result "caps_${label}_backends" "${backends:-none}"
	result "caps_${label}_migrate_moved_pct" "$pct"
	result "caps_${label}_thp_units" "$huge"
	kill $mpid
	wait $mpid 2>/dev/null || true
	stop_tierd
}

# shellcheck disable=SC2086 # lists of capability names
run_with unit $caps
check_eq "manage under the unit's capabilities" 0 "$manage_rc"
check_ge "pages moved under the unit's capabilities (%)" 99 "$pct"
for drop in $caps; do
	rest=$(echo "$caps" | tr ' ' '\n' | grep -v "^$drop\$" | tr '\n' ' ')
	# shellcheck disable=SC2086
	run_with "no_$(echo "$drop" | sed 's/^CAP_//' | tr '[:upper:]' '[:lower:]')" $rest
done
run_with none
