// Package tools exists so this directory is a buildable module; the binaries it
// builds are listed under the go.mod "tool" directive.
package tools
