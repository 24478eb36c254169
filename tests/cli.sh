#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The liminal command against live buses: every verb, its --json output
# parsed back with jq, its exit codes, and bad input.  Processes on the bus
# are real: `liminal serve` and `liminal call` run in the background, a
# server is killed with SIGKILL, and the test waits on what they print
# (through FIFOs), never on the clock.  Every command runs under timeout(1),
# so a hang fails the test instead of stalling it.
#
# usage: sh tests/cli.sh BUILD_DIR

set -u

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
L=$(cd "$1" && pwd)/tools/liminal
[ -x "$L" ] || { echo "no command at $L" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is missing (scripts/deps.sh installs it)" >&2; exit 2; }

LIMINAL_DIR=$(mktemp -d /tmp/liminal-cli.XXXXXX)
export LIMINAL_DIR
work=$LIMINAL_DIR/work
mkdir "$work"
pids=""
cleanup() {
	# $pids are timeout(1)'s; the commands are their children.
	for p in $pids; do
		pkill -9 -P "$p" 2>/dev/null
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$LIMINAL_DIR"
}
trap cleanup EXIT

failures=0
T=30 # seconds any one command may take

ok() { echo "ok   $1"; }
bad() {
	echo "FAIL $1" >&2
	[ -s "$work/out" ] && sed 's/^/  stdout: /' "$work/out" | head -20 >&2
	[ -s "$work/err" ] && sed 's/^/  stderr: /' "$work/err" | head -20 >&2
	failures=$((failures + 1))
}

# run CMD...: runs the command with a time limit, stdout to $work/out,
# stderr to $work/err; sets $rc.
run() {
	timeout $T "$@" >"$work/out" 2>"$work/err"
	rc=$?
}

# expect RC WHAT CMD...: the exit code must be RC.
expect() {
	want=$1
	what=$2
	shift 2
	run "$@"
	if [ "$rc" -eq "$want" ]; then ok "$what"; else bad "$what (exit $rc, wanted $want)"; fi
}

# refuse RC WHAT PATTERN CMD...: exit code RC, nothing on stdout, and
# exactly one line on stderr that matches PATTERN.
refuse() {
	want=$1
	what=$2
	pattern=$3
	shift 3
	run "$@"
	if [ "$rc" -ne "$want" ]; then
		bad "$what (exit $rc, wanted $want)"
	elif [ "$(wc -l <"$work/err")" -ne 1 ]; then
		bad "$what (wanted one line on stderr)"
	elif ! grep -q -- "$pattern" "$work/err"; then
		bad "$what (stderr does not match '$pattern')"
	elif [ -s "$work/out" ]; then
		bad "$what (printed on stdout too)"
	else
		ok "$what"
	fi
}

# check WHAT JQ-EXPR: the JSON in $work/out parses and JQ-EXPR is true.
check() {
	if jq -e "$2" "$work/out" >/dev/null 2>"$work/jq.err"; then
		ok "$1"
	else
		cat "$work/jq.err" >>"$work/err"
		bad "$1 (jq: $2)"
	fi
}

# A background process whose stdout goes to a FIFO we read line by line.
# start_bg NAME CMD...: sets bg_pid; the FIFO is opened on fd 3+N by the
# caller with `exec`.
start_bg() {
	name=$1
	shift
	rm -f "$work/$name.fifo"
	mkfifo "$work/$name.fifo"
	timeout 120 "$@" >"$work/$name.fifo" 2>"$work/$name.err" &
	bg_pid=$!
	pids="$pids $bg_pid"
}

# next_line FD: one line from a FIFO, or fail the test after $T seconds.
next_line() {
	line=
	if ! IFS= read -r line <&"$1"; then
		line=
	fi
}

# await_event FD WHAT JQ-EXPR: read watch events from FD until one makes
# JQ-EXPR true; others (the joins and leaves of `liminal call`) are skipped.
await_event() {
	n=0
	while [ $n -lt 50 ]; do
		next_line "$1"
		if [ -z "$line" ]; then
			break
		fi
		echo "$line" >"$work/out"
		if jq -e "$3" "$work/out" >/dev/null 2>&1; then
			ok "$2"
			return
		fi
		n=$((n + 1))
	done
	bad "$2 (no such event; last: '$line')"
}

# ------------------------------------------------------------ the command
expect 0 "--help" "$L" --help
grep -q "watch" "$work/out" || bad "--help lists the verbs"
expect 0 "--version" "$L" --version
grep -q "^liminal [0-9]" "$work/out" || bad "--version prints the version"
refuse 2 "unknown verb" "unknown verb 'frob'" "$L" frob
expect 2 "no verb" "$L"
[ "$(wc -l <"$work/err")" -eq 1 ] || bad "no verb: one line"
refuse 1 "a name with a newline, on one line" "bus 'a?b': Invalid argument" "$L" status "$(printf 'a\nb')"
# Output that cannot be written fails, with one line that says why.
for v in "--version" "ls" "ls --json"; do
	timeout $T "$L" $v >/dev/full 2>"$work/err"
	rc=$?
	[ $rc -eq 1 ] && [ "$(wc -l <"$work/err")" -eq 1 ] &&
		grep -q ": standard output: No space left on device$" "$work/err" &&
		ok "$v to a full disk fails" || bad "$v to a full disk fails (exit $rc)"
done
for v in create rm ls status top watch call serve gc stats demo; do
	expect 0 "$v --help" "$L" "$v" --help
	grep -q "^usage: liminal $v" "$work/out" || bad "$v --help prints its usage"
done

# ------------------------------------------------------------ create, ls
expect 0 "create" "$L" create t1
refuse 2 "create with a bad number" "--ring needs a number" "$L" create t2 --ring abc
refuse 2 "create with a negative number" "--participants needs a number" "$L" create t2 --participants -3
refuse 2 "create with a zero" "--conversations needs a number" "$L" create t2 --conversations 0
refuse 2 "create with too many participants" "--participants needs a number from 1 to 4096" "$L" create t2 --participants 5000
refuse 2 "create with a bad mode" "--mode needs an octal number" "$L" create t2 --mode 999
refuse 2 "create with no name" "missing bus NAME" "$L" create
refuse 2 "create with an unknown option" "unknown option '--colour'" "$L" create t2 --colour red
refuse 1 "create with a bad name" "bus 'a/b': Invalid argument" "$L" create a/b
expect 0 "create with options" "$L" create t2 --participants 8 --conversations 16 --ring 4 --max-message 128 --mode 600

expect 0 "ls" "$L" ls
grep -q "^t1 " "$work/out" && grep -q "^t2 " "$work/out" || bad "ls lists both buses"
expect 0 "ls --json" "$L" ls --json
check "ls --json: both buses" '[.buses[].name] == ["t1","t2"]'
check "ls --json: t2 as created" '.buses[1] | .participants.total == 8 and .conversations.total == 16 and .cells.total == 128'
check "ls --json: figures of t1" '.buses[0] | .size > 0 and .participants.used == 0 and .participants.dead == 0 and (.creator.pid | type) == "number" and .created_ns > 0'
check "ls --json: made by create, kept, its creator gone" '.buses[0] | .kept == true and .creator.alive == false'
refuse 1 "create a kept bus again" "bus 't1': File exists" "$L" create t1
LIMINAL_DIR=$LIMINAL_DIR/nowhere refuse 1 "ls of a missing directory" "No such file or directory" "$L" ls
# A FIFO under a bus's name would block a read-only open for good.
mkfifo "$LIMINAL_DIR/liminal.fifo"
expect 0 "ls beside a FIFO" "$L" ls
grep -q "^fifo  *(Bad message)$" "$work/out" || bad "ls shows the FIFO as no bus"
refuse 1 "create over a FIFO" "bus 'fifo': File exists" "$L" create fifo
refuse 1 "call on a FIFO" "bus 'fifo': Bad message" "$L" call fifo echo hi
rm "$LIMINAL_DIR/liminal.fifo"

# ------------------------------------------------------------ serve, call
refuse 2 "serve without --echo" "--echo" "$L" serve t1 echo
refuse 1 "serve on an unknown bus" "bus 'nope': No such file or directory" "$L" serve nope echo --echo
start_bg srv "$L" serve t1 echo --echo
srv_job=$bg_pid
exec 4<"$work/srv.fifo"
next_line 4
case "$line" in
"serving 'echo' on bus 't1' as 'liminal-serve-"*) ok "serve says it serves" ;;
*) bad "serve says it serves (got '$line')" ;;
esac
srv_name=$(echo "$line" | sed "s/.* as '\(.*\)'$/\1/")
srv_pid=${srv_name#liminal-serve-} # the command's own pid, not timeout's
refuse 1 "create a bus in use" "bus 't1': File exists" "$L" create t1
expect 0 "watch --count 1: the server is present" "$L" watch t1 --count 1 --timeout 20000
grep -q " present  $srv_name pid $srv_pid alive$" "$work/out" || bad "watch prints a present line"

expect 0 "call" "$L" call t1 echo hello
[ "$(cat "$work/out")" = "hello" ] || bad "call prints the reply"
expect 0 "call --json" "$L" call t1 echo 'a "quoted" word' --json
check "call --json: reply and size" '.reply == "a \"quoted\" word" and .bytes == 15 and .rtt_ns > 0'
printf 'from\nstdin' >"$work/in"
run "$L" call t1 echo - <"$work/in"
[ "$rc" -eq 0 ] && [ "$(cat "$work/out")" = "$(printf 'from\nstdin')" ] && ok "call reads - from stdin" || bad "call reads - from stdin"
refuse 1 "call an unknown service" "bus 't1': service 'nobody'" "$L" call t1 nobody hi
refuse 1 "call on an unknown bus" "bus 'nope': No such file or directory" "$L" call nope echo hi
refuse 2 "call with a bad timeout" "--timeout needs a number" "$L" call t1 echo hi --timeout soon
refuse 2 "call with a timeout out of range" "--timeout needs a number" "$L" call t1 echo hi --timeout 99999999999
refuse 2 "call with a missing message" "missing argument" "$L" call t1 echo
refuse 2 "call with a zero timeout" "--timeout needs a number from 1" "$L" call t1 echo hi --timeout 0
expect 0 "call of a message that starts with a dash, after --" "$L" call t1 echo -- -x
[ "$(cat "$work/out")" = "-x" ] || bad "call prints the dashed reply"
expect 0 "call --json of UTF-8" "$L" call t1 echo "$(printf 'h\303\251llo')" --json
check "call --json: UTF-8 passes through" '.reply == "h\u00e9llo" and .bytes == 6'
printf 'a\377b' >"$work/bin"
run "$L" call t1 echo - --json <"$work/bin"
check "call --json: a byte that is not UTF-8 is escaped" '.reply == "a\u00ffb" and .bytes == 3' 
head -c 200 /dev/zero | tr '\0' x >"$work/big"
run "$L" call t2 echo - <"$work/big"
[ "$rc" -eq 1 ] && grep -q "bus 't2': Message too long" "$work/err" && ok "call of a message too long" || bad "call of a message too long"

# ------------------------------------------------------------ watch: present, join
start_bg watch "$L" watch t1 --json
watch_job=$bg_pid
exec 5<"$work/watch.fifo"
await_event 5 "watch: the server is present" ".event == \"present\" and .name == \"$srv_name\" and .pid == $srv_pid and .health == \"alive\""

start_bg srv2 "$L" serve t1 other --echo
exec 6<"$work/srv2.fifo"
next_line 6
srv2_name=$(echo "$line" | sed "s/.* as '\(.*\)'$/\1/")
srv2_pid=${srv2_name#liminal-serve-}
await_event 5 "watch: a join" ".event == \"join\" and .name == \"$srv2_name\" and .pid == $srv2_pid"
expect 0 "watch --count 1 with two present" "$L" watch t1 --json --count 1 --timeout 20000
[ "$(wc -l <"$work/out")" -eq 1 ] || bad "watch --count 1 prints one event"

# ------------------------------------------------------------ a conversation held open
# The first server stops (SIGSTOP), so a call to it stays open, unanswered:
# status, top and stats see it in flight.
kill -STOP "$srv_pid"
timeout $T "$L" call t1 echo held --timeout 20000 >"$work/held.out" 2>"$work/held.err" &
call_pid=$!
pids="$pids $call_pid"
tries=0
while :; do
	run "$L" status t1 --json
	# Open, sent and counted by the server's entry: each is a separate
	# store, so the picture may catch them one at a time.
	jq -e ".conversations | length == 1 and .[0].sent == 1" "$work/out" >/dev/null 2>&1 &&
		jq -e ".participants[] | select(.name == \"$srv_name\") | .serving == 1" "$work/out" >/dev/null 2>&1 &&
		break
	tries=$((tries + 1))
	if [ $tries -gt 20000 ]; then bad "status sees the call in flight"; break; fi
done
check "status --json: the bus" '.bus.name == "t1" and .bus.ring_depth == 8 and .bus.max_message == 4096 and .bus.kept == true and .bus.creator.alive == false'
check "status --json: participants" "[.participants[].name] | contains([\"$srv_name\", \"$srv2_name\"])"
check "status --json: the server's services" ".participants[] | select(.name == \"$srv_name\") | .services == [\"echo\"] and .health == \"alive\" and .serving == 1"
check "status --json: services and servers" ".services | map({(.name): .servers}) | add | .echo == [\"$srv_name\"] and .other == [\"$srv2_name\"]"
check "status --json: the conversation" ".conversations[0] | (.initiator | startswith(\"liminal-call-\")) and .server == \"$srv_name\" and .service == \"echo\" and .phase == \"active\" and .policy == \"fail\" and .sent == 1 and .received == 0 and .age_s >= 0"
check "status --json: memory" '.memory.participants.used == 3 and .memory.conversations.used == 1 and .memory.cells.used >= 1 and .memory.cells.total == 4096'
expect 0 "status" "$L" status t1
grep -q "^participants (3/64)" "$work/out" && grep -q "$srv_name" "$work/out" && grep -q " active " "$work/out" || bad "status shows participants and the conversation"
grep -q "^bus t1: .* (gone), kept until removed$" "$work/out" || bad "status says the bus is kept"

expect 0 "top --json, piped: one snapshot" "$L" top t1 --json --interval 20
[ "$(wc -l <"$work/out")" -eq 1 ] || bad "top --json prints one line when piped"
check "top --json: the conversation and the rates" ".conversations[0].sent == 1 and (.conversations[0].sent_per_s | type) == \"number\" and ([.participants[].name] | contains([\"$srv_name\"])) and .interval_s > 0"
# Six calls were answered by the first server, on conversations closed
# since: its total counts them still.
check "top --json: a server's total outlives its conversations" ".participants[] | select(.name == \"$srv_name\") | .served == 6 and .sent == 0 and .served_per_s == 0"
expect 0 "top --count 2" "$L" top t1 --json --interval 20 --count 2
[ "$(wc -l <"$work/out")" -eq 2 ] || bad "top --count 2 prints two snapshots"
expect 0 "top, piped" "$L" top t1 --interval 20
grep -q "^CONVERSATION" "$work/out" && grep -q "^PARTICIPANT" "$work/out" || bad "top prints its tables"
refuse 2 "top with a bad interval" "--interval needs a number" "$L" top t1 --interval -5

expect 0 "stats --prometheus" "$L" stats t1 --prometheus
bad_lines=$(grep -v '^# \(HELP\|TYPE\) liminal_[a-z_]* ' "$work/out" | grep -cv '^liminal_[a-z_]*{bus="t1"[^}]*} [0-9][0-9]*$')
[ "$bad_lines" -eq 0 ] && ok "stats --prometheus: every line is a sample or a comment" || bad "stats --prometheus: $bad_lines malformed lines"
grep -q '^liminal_conversation_messages_total{bus="t1",conversation="0x[0-9a-f]*",service="echo",direction="request"} 1$' "$work/out" &&
	ok "stats --prometheus: the request in flight" || bad "stats --prometheus: the request in flight"
grep -q '^liminal_participants{bus="t1",state="alive"} 3$' "$work/out" && ok "stats --prometheus: participants" || bad "stats --prometheus: participants"
expect 0 "stats --json" "$L" stats t1 --json
check "stats --json" '.participants_used == 3 and .conversations_used == 1 and .open_requests == 1'
expect 0 "stats" "$L" stats t1
grep -q "^conversations_used 1$" "$work/out" || bad "stats prints key value lines"
refuse 2 "stats with both formats" "exclude each other" "$L" stats t1 --json --prometheus

kill -CONT "$srv_pid"
wait "$call_pid"
[ $? -eq 0 ] && [ "$(cat "$work/held.out")" = "held" ] && ok "the held call is answered" || bad "the held call is answered"
await_event 5 "watch: the caller's leave" '.event == "leave" and (.name | startswith("liminal-call-"))'
refuse 2 "watch of a bad participant name" "not a participant name" "$L" watch t1 a/b

# ------------------------------------------------------------ watch: crash; gc
kill -9 "$srv2_pid"
await_event 5 "watch: a crash" ".event == \"crash\" and .name == \"$srv2_name\" and .pid == $srv2_pid"
kill -TERM "$srv_pid"
await_event 5 "watch: a leave" ".event == \"leave\" and .name == \"$srv_name\" and .pid == $srv_pid"
wait "$srv_job"
[ $? -eq 0 ] && ok "serve leaves cleanly on SIGTERM" || bad "serve leaves cleanly on SIGTERM"
kill -TERM "$(pgrep -P "$watch_job")" 2>/dev/null
wait "$watch_job"
[ $? -eq 0 ] && ok "watch ends cleanly on SIGTERM" || bad "watch ends cleanly on SIGTERM"

expect 0 "gc --json" "$L" gc t1 --json
check "gc --json: the dead server" ".participants == [{\"name\": \"$srv2_name\", \"pid\": $srv2_pid}]"
expect 0 "gc again" "$L" gc t1
[ "$(cat "$work/out")" = "nothing to free" ] || bad "gc says when there is nothing to free"
expect 0 "stats after the crash" "$L" stats t1 --prometheus
grep -q '^liminal_crashes_total{bus="t1"} 1$' "$work/out" && ok "stats --prometheus: the crash counted" || bad "stats --prometheus: the crash counted"
refuse 1 "gc of an unknown bus" "bus 'nope': No such file or directory" "$L" gc nope

run "$L" watch t1 nobody --count 1 --timeout 50
[ "$rc" -eq 1 ] && grep -q "timed out after 0 of 1 events" "$work/err" && ok "watch --count times out" || bad "watch --count times out"
expect 0 "watch --timeout alone ends well" "$L" watch t1 --timeout 50
refuse 2 "watch with a bad count" "--count needs a number" "$L" watch t1 --count x

# ------------------------------------------------------------ top on a terminal
# script(1) gives top a terminal; q, then Ctrl-C, must end it with status 0
# and the terminal restored.  script runs the command through $SHELL, and a
# shell that does not exec it (dash) would itself die of the Ctrl-C, so the
# command execs top and the shell is pinned.
if command -v script >/dev/null; then
	for key in q ctrl-c; do
		rm -f "$work/tty.in" "$work/tty.out"
		mkfifo "$work/tty.in" "$work/tty.out"
		SHELL=/bin/sh timeout $T script -qec "exec $L top t1 --interval 50" /dev/null <"$work/tty.in" >"$work/tty.out" 2>&1 &
		tty_job=$!
		exec 7>"$work/tty.in" 8<"$work/tty.out"
		seen=0
		n=0
		while [ $n -lt 200 ] && IFS= read -r line <&8; do
			case "$line" in *"liminal top - bus t1"*) seen=1; break ;; esac
			n=$((n + 1))
		done
		if [ "$key" = q ]; then printf q >&7; else printf '\003' >&7; fi
		cat <&8 >/dev/null
		wait "$tty_job"
		rc=$?
		exec 7>&- 8<&-
		[ $seen -eq 1 ] && [ $rc -eq 0 ] && ok "top on a terminal ends on $key" ||
			bad "top on a terminal ends on $key (drew: $seen, exit $rc)"
	done
fi

# ------------------------------------------------------------ a bus replaced under a watch
start_bg srv3 "$L" serve t2 echo --echo
srv3_job=$bg_pid
exec 9<"$work/srv3.fifo"
next_line 9
start_bg watch2 "$L" watch t2 --json
watch2_job=$bg_pid
exec 3<"$work/watch2.fifo"
await_event 3 "watch t2: the server is present" '.event == "present"'
# Made under another name and renamed over it: the watch sees one bus or
# the other, never none.
expect 0 "a new bus for t2" "$L" create t2new --max-message 128
mv "$LIMINAL_DIR/liminal.t2new" "$LIMINAL_DIR/liminal.t2" && ok "t2 replaced under a watch" || bad "t2 replaced under a watch"
wait "$watch2_job"
rc=$?
[ $rc -eq 1 ] && grep -q "^liminal watch: bus 't2': replaced by a new bus$" "$work/watch2.err" &&
	ok "watch says its bus was replaced" || bad "watch says its bus was replaced (exit $rc: $(cat "$work/watch2.err"))"
exec 3<&- 9<&-
kill "$srv3_job" 2>/dev/null
wait "$srv3_job" 2>/dev/null

# ------------------------------------------------------------ rm, unknown buses
expect 0 "rm" "$L" rm t1
refuse 1 "rm again" "bus 't1': No such file or directory" "$L" rm t1
for v in status top stats; do
	refuse 1 "$v of an unknown bus" "liminal $v: bus 't1': No such file or directory" "$L" "$v" t1
done
refuse 1 "watch of an unknown bus" "bus 't1': No such file or directory" "$L" watch t1
expect 0 "rm the other" "$L" rm t2
expect 0 "ls --json of no buses" "$L" ls --json
check "ls --json: empty" '.buses == []'

expect 0 "demo" "$L" demo --calls 200

if [ "$failures" -ne 0 ]; then
	echo "$failures check(s) failed" >&2
	exit 1
fi
echo "all checks passed"
