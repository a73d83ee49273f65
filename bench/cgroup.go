package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CPU accounting sources, as reported in the cpu_source field.
const (
	CPUSourceCgroup2 = "cgroup2"        // cpu.stat usage_usec of a private cgroup v2
	CPUSourceCgroup1 = "cgroup1"        // cpuacct.usage of a private cgroup v1 cpuacct group
	CPUSourceProc    = "proc_tree"      // utime+stime (+ reaped children) summed over the process tree
	cgroupParentName = "petrel-bench"   // parent group of every accounting group
	cgroupNotMounted = "no_cgroup_here" // internal: neither hierarchy is usable
)

// CPUGroup accounts the CPU time and memory of every process of one
// contender (an MTA's daemons, a load generator): a private cgroup when
// one can be created (v2 preferred, else v1 cpuacct), else the tree of
// processes descending from the pids given to Add (a daemon that
// detaches from its parent and is re-parented to init escapes that tree,
// which is why cgroups are preferred). Processes started through Command
// join the group before they exec, so every child they fork is counted.
type CPUGroup struct {
	Name   string
	Source string
	dir    string // cgroup directory ("" for proc_tree)
	usage  string // file holding the usage counter

	mu    sync.Mutex
	roots []int
	peak  int64
}

// cgroupMounts returns the cgroup v2 mount point and the cgroup v1 cpuacct
// mount point found in mounts (the text of /proc/self/mounts).
func cgroupMounts(mounts []byte) (v2, v1cpuacct string) {
	sc := bufio.NewScanner(bytes.NewReader(mounts))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		switch f[2] {
		case "cgroup2":
			if v2 == "" {
				v2 = f[1]
			}
		case "cgroup":
			for _, o := range strings.Split(f[3], ",") {
				if o == "cpuacct" && v1cpuacct == "" {
					v1cpuacct = f[1]
				}
			}
		}
	}
	return v2, v1cpuacct
}

// NewCPUGroup creates the accounting group name (unique per run: callers
// add a sequence number). It never fails: without a writable cgroup it
// falls back to proc_tree.
func NewCPUGroup(name string) *CPUGroup {
	g := &CPUGroup{Name: name, Source: CPUSourceProc}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	v2, v1 := cgroupMounts(mounts)
	try := func(root, usage, source string) bool {
		if root == "" {
			return false
		}
		dir := filepath.Join(root, cgroupParentName, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false
		}
		if _, err := os.Stat(filepath.Join(dir, usage)); err != nil {
			_ = os.Remove(dir)
			return false
		}
		g.dir, g.usage, g.Source = dir, usage, source
		return true
	}
	if !try(v2, "cpu.stat", CPUSourceCgroup2) {
		try(v1, "cpuacct.usage", CPUSourceCgroup1)
	}
	return g
}

// Command returns cmd wrapped so that the process joins the group before
// it execs (sh writes its own pid to cgroup.procs, then execs cmd).
func (g *CPUGroup) Command(name string, args ...string) *exec.Cmd {
	return g.CommandContext(context.Background(), name, args...)
}

// CommandContext is Command killed when ctx ends (exec.CommandContext).
func (g *CPUGroup) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	if g.dir == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	script := `echo $$ > "$CG_PROCS" && exec "$@"`
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", script, "sh", name}, args...)...)
	cmd.Env = append(os.Environ(), "CG_PROCS="+filepath.Join(g.dir, "cgroup.procs"))
	return cmd
}

// Started records the pid of a process started with Command (the root of
// the proc_tree fallback).
func (g *CPUGroup) Started(pid int) {
	g.mu.Lock()
	g.roots = append(g.roots, pid)
	g.mu.Unlock()
}

// Add moves an already running process into the group (its future
// children follow; children it already has do not).
func (g *CPUGroup) Add(pid int) error {
	g.Started(pid)
	if g.dir == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("cgroup %s: %w", g.Name, err)
	}
	return nil
}

// Usage returns the CPU time (user + system) the group has used.
func (g *CPUGroup) Usage() (time.Duration, error) {
	if g.dir == "" {
		g.mu.Lock()
		roots := append([]int(nil), g.roots...)
		g.mu.Unlock()
		return procTreeCPU(roots)
	}
	b, err := os.ReadFile(filepath.Join(g.dir, g.usage))
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", g.Name, err)
	}
	d, ok := parseCgroupUsage(g.Source, b)
	if !ok {
		return 0, fmt.Errorf("cgroup %s: unparsable %s", g.Name, g.usage)
	}
	return d, nil
}

// parseCgroupUsage reads cpu.stat (v2: "usage_usec N") or cpuacct.usage
// (v1: nanoseconds).
func parseCgroupUsage(source string, b []byte) (time.Duration, bool) {
	if source == CPUSourceCgroup1 {
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(n), err == nil && n >= 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Duration(n) * time.Microsecond, err == nil && n >= 0
		}
	}
	return 0, false
}

// Pids lists the group's live processes.
func (g *CPUGroup) Pids() []int {
	if g.dir == "" {
		g.mu.Lock()
		roots := append([]int(nil), g.roots...)
		g.mu.Unlock()
		return procTree(roots)
	}
	b, _ := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// SampleRSS sums the proportional set size (Pss of
// /proc/<pid>/smaps_rollup: shared pages split between the processes
// mapping them, so a multi-process MTA's libraries are not counted once
// per daemon; VmRSS where smaps_rollup is missing) over the group's live
// processes, keeps the highest sum seen (PeakRSS) and returns it.
func (g *CPUGroup) SampleRSS() int64 {
	var sum int64
	for _, p := range g.Pids() {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p)); err == nil {
			if v, ok := ParseProcStatus(b, "Pss"); ok {
				sum += v
				continue
			}
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		if v, ok := ParseProcStatus(b, "VmRSS"); ok {
			sum += v
		}
	}
	g.mu.Lock()
	g.peak = max(g.peak, sum)
	g.mu.Unlock()
	return sum
}

// PeakRSS is the highest SampleRSS sum.
func (g *CPUGroup) PeakRSS() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

// WatchRSS samples RSS every interval until stop is closed.
func (g *CPUGroup) WatchRSS(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		g.SampleRSS()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// Kill sends SIGKILL to every process left in the group, waits for the
// group to empty and removes it: nothing a contender started outlives
// its run.
func (g *CPUGroup) Kill() {
	if g.dir != "" {
		// cgroup v2's cgroup.kill ends every process, including ones
		// forked meanwhile (Exim forks a delivery process per message).
		_ = os.WriteFile(filepath.Join(g.dir, "cgroup.kill"), []byte("1"), 0o644)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := g.Pids()
		if len(pids) == 0 || time.Now().After(deadline) {
			break
		}
		for _, p := range pids {
			if p != os.Getpid() {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		if g.dir == "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g.dir != "" {
		for i := 0; i < 50; i++ {
			if err := os.Remove(g.dir); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// procTree returns roots and their live descendants.
func procTree(roots []int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if st, ok := parseStat(b); ok {
			parent[pid] = st.ppid
		}
	}
	in := map[int]bool{}
	for _, r := range roots {
		if _, live := parent[r]; live {
			in[r] = true
		}
	}
	var walk func(p int) bool
	walk = func(p int) bool {
		for depth := 0; p > 1 && depth < 64; depth++ {
			if in[p] {
				return true
			}
			p = parent[p]
		}
		return false
	}
	var out []int
	for p := range parent {
		if walk(p) {
			in[p] = true
			out = append(out, p)
		}
	}
	return out
}

// procTreeCPU sums utime+stime and reaped children's times over the tree.
func procTreeCPU(roots []int) (time.Duration, error) {
	var total time.Duration
	for _, p := range procTree(roots) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		if st, ok := parseStat(b); ok {
			total += st.self + st.children
		}
	}
	return total, nil
}

// SelfCPU returns the CPU time of this process (the harness: its sink and
// load generator goroutines).
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
