package benchenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Isolate puts the benchmark that the program name runs in a network namespace of its own,
// where only a loopback interface exists: nothing it sends can leave, and no firewall rule or
// connection tracking of the host's is on its path. A host running Docker has netfilter tables
// and connection tracking on its loopback too, whose table 12,000 connections a second fill
// within seconds (dropping SYNs), and which every datagram crosses at a cost alike for every
// contender, shrinking every ratio towards 1.
//
// Called first thing by the benchmark, it runs this program again, with the same arguments, in
// a new namespace, passes StopSignals on to it, and returns Done with its exit status (128 plus
// the signal's number for a run a signal killed, as a shell gives): the caller exits with it
// (Exit). In that run, which the environment variable NAME_NETNS marks with the namespace it
// left, it checks that the run did leave it and that no interface is up yet, as in a namespace
// just made (an environment that merely carries the mark is refused with an error), brings the
// loopback up and returns Own. Where no namespace can be made (not root, not permitted), it
// starts nothing and returns the host's namespace with the reason.
func Isolate(name string) (Netns, error) {
	mark := markEnv(name)
	if left := os.Getenv(mark); left != "" {
		here, err := netnsOf()
		if err != nil {
			return Netns{}, err
		}
		if here == left {
			return Netns{}, fmt.Errorf("%s=%s names this network namespace: the run is not in one of its own (unset %s)", mark, left, mark)
		}
		// A mark naming another namespace (stale, mistyped) proves nothing: a namespace that
		// Isolate made has no interface up yet.
		up, err := anUp()
		if err != nil {
			return Netns{}, err
		}
		if up != "" {
			return Netns{}, fmt.Errorf("%s=%s is set, but interface %s is up here: the run is not in a network namespace of its own (unset %s)", mark, left, up, mark)
		}
		if err := LoopbackUp(); err != nil {
			return Netns{}, err
		}
		return Netns{Own: true}, nil
	}
	self, err := os.Executable()
	if err != nil {
		return Host(fmt.Sprintf("no namespace of its own: find this program: %v", err)), nil
	}
	host, err := netnsOf()
	if err != nil {
		return Host(fmt.Sprintf("no namespace of its own: %v", err)), nil
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), mark+"="+host)
	// Pdeathsig is sent when the thread that started the child ends, not the process: this
	// goroutine keeps its thread until the child has ended.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGTERM}
	// Caught before the child starts, so that a signal meant for the run is passed on, not
	// lost: the run stops its servers and removes its files.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, StopSignals()...)
	if err := cmd.Start(); err != nil {
		signal.Stop(sigs)
		return Host(fmt.Sprintf("no namespace of its own: %v", err)), nil
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	signal.Stop(sigs)
	close(sigs)
	return Netns{Done: true, Status: status(name, err)}, nil
}

// status is the exit status of a run that cmd.Wait returned err for.
func status(name string, err error) int {
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		// A run a signal ended (the OOM killer, SIGPIPE from a closed report) ends this one
		// with the status a shell gives a command killed by that signal.
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Fprintf(os.Stderr, "%s: the run in its own network namespace: %v\n", name, err)
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "%s: the run in its own network namespace: %v\n", name, err)
	return 1
}

// anUp names an interface of this network namespace that is up, or none.
func anUp() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list this network namespace's interfaces: %w", err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 {
			return i.Name, nil
		}
	}
	return "", nil
}

// netnsOf names the network namespace this process runs in.
func netnsOf() (string, error) {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return "", fmt.Errorf("read this network namespace: %w", err)
	}
	return ns, nil
}

// LoopbackUp brings up the loopback interface of a new network namespace.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	return nil
}
