package spireload

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ProcCPU is a process's user+system CPU time so far, from /proc/<pid>/stat
// (pid 0: this process). It excludes children: SPIRE's plugin processes
// are measured on their own.
func ProcCPU(pid int) (time.Duration, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	// Fields after the command: utime and stime are the 12th and 13th
	// (14th and 15th of the whole line), in USER_HZ, 100 on Linux.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q are not numbers", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// procStat returns the fields of /proc/<pid>/stat after the command name
// (which may hold spaces and parentheses), the state first.
func procStat(pid int) ([]string, error) {
	name := "self"
	if pid != 0 {
		name = strconv.Itoa(pid)
	}
	b, err := os.ReadFile("/proc/" + name + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil, fmt.Errorf("/proc/%s/stat: no command field", name)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%s/stat: %d fields after the command, want at least 13", name, len(f))
	}
	return f, nil
}

// childByExe finds the child of parent whose executable is named exe (how
// SPIRE's plugin processes are told apart: they are its direct children).
func childByExe(parent int, exe string) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procStat(pid)
		if err != nil || f[1] != strconv.Itoa(parent) {
			continue
		}
		if path, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.Base(path) == exe {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no child process %s of pid %d", exe, parent)
}
