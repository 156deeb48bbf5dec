// Command etcd is the etcd server of the local test cluster, built from the
// published go.etcd.io/etcd/server/v3 module (its own main module carries
// relative replace directives and cannot be installed directly).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
