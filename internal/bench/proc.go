package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the harness started in its own process group, killed
// with its group by stop and, should the harness die, by the kernel
// (Pdeathsig).
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	// stdin is the child's standard input (startChildStdin only).
	stdin io.WriteCloser
	mu    sync.Mutex   // protects out
	out   bytes.Buffer // stderr and stdout, for errors (the last 64 KiB)
}

// startChild starts argv with the harness's environment plus env. Its
// output is kept (tail) and, when lines is not nil, each stderr line is
// also sent to lines.
func startChild(name string, argv []string, env []string, lines func(string)) (*child, error) {
	return start(name, argv, env, lines, false)
}

// startChildStdin is startChild with a pipe to the child's standard input.
func startChildStdin(name string, argv []string, env []string, lines func(string)) (*child, error) {
	return start(name, argv, env, lines, true)
}

func start(name string, argv []string, env []string, lines func(string), stdin bool) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	if stdin {
		w, err := cmd.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		c.stdin = w
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			c.mu.Lock()
			if c.out.Len() > 64*1024 {
				c.out.Reset()
			}
			c.out.WriteString(l + "\n")
			c.mu.Unlock()
			if lines != nil {
				lines(l)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(c.done)
	}()
	return c, nil
}

// pid returns the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// output returns the tail of what the child printed.
func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the child's process group, then SIGKILL after 3s.
func (c *child) stop() {
	if c == nil || c.exited() {
		return
	}
	_ = syscall.Kill(-c.pid(), syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.done
	}
}

// procStat is a process's CPU time and resident memory.
type procStat struct {
	CPU time.Duration // user + system
	RSS int64         // bytes
	// Anon is the anonymous part of RSS in bytes (RssAnon: heap, stacks,
	// written data); the rest is file-backed, mostly the binary's pages.
	Anon int64
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on
// every Linux architecture Go supports).
const clockTick = 100

// readProc reads /proc/<pid>/stat: utime and stime (fields 14, 15) and
// rss in pages (field 24).
func readProc(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("reading process stats: %w", err)
	}
	s := string(b)
	// The command name (field 2) may hold spaces; fields restart after ")".
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("reading process stats: no command name in %q", s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("reading process stats: %d fields", len(f)+2)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return procStat{
		CPU:  time.Duration(ut+st) * time.Second / clockTick,
		RSS:  rss * int64(os.Getpagesize()),
		Anon: readRSSAnon(pid),
	}, nil
}

// readRSSAnon reads RssAnon from /proc/<pid>/status, in bytes (0 when the
// kernel does not report it).
func readRSSAnon(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// raiseNoFile raises the soft open-file limit to the hard limit (and the
// hard limit to want when allowed), for thousands of streams.
func raiseNoFile(want uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("reading the open-file limit: %w", err)
	}
	if l.Max < want {
		l.Max = want // succeeds as root
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		l.Max, l.Cur = 0, 0
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("raising the open-file limit: %w", err)
		}
	}
	return nil
}

// waitFor polls cond every 20ms until it returns nil or d passes.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readGroup sums CPU and RSS over the processes of process group pgid
// (a child and, for nginx, its workers).
func readGroup(pgid int) (procStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return procStat{}, fmt.Errorf("listing processes: %w", err)
	}
	var sum procStat
	found := false
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) { // field 5: pgrp
			continue
		}
		st, err := readProc(pid)
		if err != nil {
			continue
		}
		sum.CPU += st.CPU
		sum.RSS += st.RSS
		sum.Anon += st.Anon
		found = true
	}
	if !found {
		return sum, fmt.Errorf("reading process group %d: no process", pgid)
	}
	return sum, nil
}
