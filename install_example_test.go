package notsotuf

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/spf13/afero"
)

// exampleTar builds a tufup-layout tar holding one file.
func exampleTar(name, content string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "./" + name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(content))})
	tw.Write([]byte(content))
	tw.Close()
	return buf.Bytes()
}

// An installer swaps a whole tree: after a crash anywhere, recover leaves
// the old version or the new one, complete.
func Example_installTar() {
	fsys := afero.NewMemMapFs()
	in := &installer{fs: fsys, dir: "/opt/myapp"}
	// At start: finish or undo an install a crash interrupted.
	if err := in.recover(); err != nil {
		log.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		tarball := exampleTar("run-"+v, "#!/bin/sh\necho "+v+"\n")
		// The limit is the signed tar_size: a larger archive is refused.
		if err := in.installTar(context.Background(), bytes.NewReader(tarball), int64(len(tarball))); err != nil {
			log.Fatal(err)
		}
	}
	names, _ := afero.ReadDir(fsys, "/opt/myapp")
	for _, fi := range names {
		fmt.Println(fi.Name(), fi.Mode())
	}
	siblings, _ := afero.ReadDir(fsys, "/opt")
	fmt.Println(len(siblings), "entry in /opt")
	// Output:
	// run-v2 -rwxr-xr-x
	// 1 entry in /opt
}

// In single-executable mode the archive holds one file, which replaces the
// executable by rename (renaming the running one aside first on Windows).
func Example_installExecutable() {
	fsys := afero.NewMemMapFs()
	afero.WriteFile(fsys, "/usr/local/bin/mytool", []byte("old build"), 0o750)
	in := &installer{fs: fsys, dir: "/usr/local/bin/mytool", singleExe: true}
	tarball := exampleTar("mytool", "new build")
	if err := in.installExecutable(context.Background(), bytes.NewReader(tarball), int64(len(tarball))); err != nil {
		log.Fatal(err)
	}
	data, _ := afero.ReadFile(fsys, "/usr/local/bin/mytool")
	fi, _ := fsys.Stat("/usr/local/bin/mytool")
	fmt.Printf("%s %v\n", data, fi.Mode()) // keeps the old file's mode
	// Output: new build -rwxr-x---
}

// applyPatchChain turns a cached tar into the newest one, one verified
// patch after the other.
func Example_applyPatchChain() {
	fsys := afero.NewMemMapFs()
	v1, v2 := exampleTar("app", "version 1"), exampleTar("app", "version 2")
	var patch bytes.Buffer
	if err := Diff(v1, v2, &patch, nil); err != nil { // done by the repository
		log.Fatal(err)
	}
	afero.WriteFile(fsys, "/cache/app-1.tar", v1, 0o644)
	afero.WriteFile(fsys, "/cache/app-2.patch", patch.Bytes(), 0o644)
	steps := []patchStep{{
		Name: "app-2.patch",
		Path: "/cache/app-2.patch",
		Meta: PatchMeta{TarSize: int64(len(v2)), TarHash: sha256Hex(v2)}, // signed
	}}
	var written int64
	err := applyPatchChain(context.Background(), fsys, "/cache/app-1.tar", steps, "/cache/app-2.tar", func(n int64) { written += n })
	if err != nil {
		log.Fatal(err)
	}
	got, _ := afero.ReadFile(fsys, "/cache/app-2.tar")
	fmt.Println(bytes.Equal(got, v2), written == int64(len(v2)))
	// Output: true true
}
