// Command pause is the test cluster's pod sandbox image (no registry is reachable, so
// the usual registry.k8s.io/pause cannot be pulled): it sleeps until SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
