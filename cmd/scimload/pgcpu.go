package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// With -store postgres the server's work is split between this process and
// the PostgreSQL backends serving its pool; on a 2-core machine both count.
// pgCPU reads the CPU time (user + system) of every backend connected to
// the benchmark's database, from /proc (the cluster runs on this machine
// under scripts/test-env.sh). It returns nil when there is no pool or the
// backends cannot be read (another machine): the figure is then omitted.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

func (o *opts) pgCPU(ctx context.Context) map[int]time.Duration {
	if o.pgPool == nil {
		return nil
	}
	rows, err := o.pgPool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scimload: backend CPU:", err)
		return nil
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil
		}
		if d, ok := procCPU(pid); ok {
			out[pid] = d
		}
	}
	if rows.Err() != nil {
		return nil
	}
	return out
}

// procCPU is utime + stime of a process (fields 14 and 15 of
// /proc/<pid>/stat, after the parenthesised command name).
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clockTicks, true
}

// pgDelta is the CPU the backends used between two readings; a backend
// that started in between counts from zero.
func pgDelta(before, after map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range after {
		d += t - before[pid]
	}
	return d
}
