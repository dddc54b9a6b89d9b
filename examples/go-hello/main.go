// A WAGI (CGI over WASI preview1) hello function in Go. Run directly with
// `wedge run`, it prints the same CGI response on stdout.
package main

import (
	"fmt"
	"os"
)

func main() {
	name := os.Getenv("QUERY_STRING")
	if name == "" {
		name = "world"
	}
	fmt.Print("Content-Type: text/plain\r\n\r\n")
	fmt.Printf("Hello, %s, from Go %s on wasip1\n", name, "WAGI")
}
