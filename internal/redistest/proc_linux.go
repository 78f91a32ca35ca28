package redistest

import "syscall"

// sysProcAttr has the kernel kill redis-server if the test binary dies
// without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
