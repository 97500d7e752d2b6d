package notsotuf

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spf13/afero"
)

// rawTarBlock returns a USTAR header block for name, with typeflag and
// size, and (for GNU) the GNU magic; the checksum is recomputed after
// edit changes the block.
func rawTarBlock(t testing.TB, name string, typeflag byte, size int64, gnu bool, edit func(b []byte)) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: 0o644, Format: tar.FormatUSTAR}
	if typeflag == tar.TypeDir {
		h.Typeflag, h.Mode = tar.TypeDir, 0o755
	}
	if err := tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(buf.Bytes()[:512])
	b[156] = typeflag
	if gnu {
		copy(b[257:265], "ustar  \x00")
	}
	if edit != nil {
		edit(b)
	}
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func padBlock(b []byte) []byte {
	if n := len(b) % 512; n != 0 {
		b = append(b, make([]byte, 512-n)...)
	}
	return b
}

// paxRecords encodes PAX records in the given order: "<len> <key>=<value>\n",
// where len counts the whole record, its own digits included.
func paxRecords(kv ...string) []byte {
	var out []byte
	for i := 0; i < len(kv); i += 2 {
		rec := " " + kv[i] + "=" + kv[i+1] + "\n"
		n := len(rec) + 1
		for len(strconv.Itoa(n))+len(rec) != n {
			n = len(strconv.Itoa(n)) + len(rec)
		}
		out = append(out, strconv.Itoa(n)+rec...)
	}
	return out
}

// sparseTar returns a tar holding "./" and one sparse file "./big" whose 5
// bytes of data expand to realSize bytes, in the given sparse format:
// "pax0.0", "pax0.1", "pax1.0" (GNU's PAX sparse formats) or "gnu" (the old
// GNU type 'S').
func sparseTar(t testing.TB, format string, realSize int64) []byte {
	t.Helper()
	data := []byte("hello")
	real := strconv.FormatInt(realSize, 10)
	var out []byte
	out = append(out, rawTarBlock(t, "./", tar.TypeDir, 0, false, nil)...)
	pax := func(recs []byte) {
		out = append(out, rawTarBlock(t, "./PaxHeaders/big", tar.TypeXHeader, int64(len(recs)), false, nil)...)
		out = append(out, padBlock(recs)...)
	}
	switch format {
	case "pax0.0":
		pax(paxRecords("GNU.sparse.size", real, "GNU.sparse.numblocks", "1", "GNU.sparse.offset", "0", "GNU.sparse.numbytes", "5"))
		out = append(out, rawTarBlock(t, "./big", tar.TypeReg, int64(len(data)), false, nil)...)
		out = append(out, padBlock(bytes.Clone(data))...)
	case "pax0.1":
		pax(paxRecords("GNU.sparse.size", real, "GNU.sparse.numblocks", "1", "GNU.sparse.map", "0,5"))
		out = append(out, rawTarBlock(t, "./big", tar.TypeReg, int64(len(data)), false, nil)...)
		out = append(out, padBlock(bytes.Clone(data))...)
	case "pax1.0":
		pax(paxRecords("GNU.sparse.major", "1", "GNU.sparse.minor", "0", "GNU.sparse.name", "./big", "GNU.sparse.realsize", real))
		body := padBlock([]byte("1\n0\n5\n"))
		body = append(body, data...)
		out = append(out, rawTarBlock(t, "./GNUSparseFile.0/big", tar.TypeReg, int64(len(body)), false, nil)...)
		out = append(out, padBlock(body)...)
	case "gnu":
		out = append(out, rawTarBlock(t, "./big", tar.TypeGNUSparse, int64(len(data)), true, func(b []byte) {
			copy(b[386:398], fmt.Sprintf("%011o\x00", 0))        // first sparse entry: offset
			copy(b[398:410], fmt.Sprintf("%011o\x00", 5))        // and length
			copy(b[483:495], fmt.Sprintf("%011o\x00", realSize)) // real size
		})...)
		out = append(out, padBlock(bytes.Clone(data))...)
	default:
		t.Fatalf("unknown sparse format %q", format)
	}
	return append(out, make([]byte, 1024)...)
}

var sparseFormats = []string{"pax0.0", "pax0.1", "pax1.0", "gnu"}

// TestSparseTarFixture: archive/tar itself reads the crafted entries as
// sparse files of the claimed size (else the tests below prove nothing).
func TestSparseTarFixture(t *testing.T) {
	for _, f := range sparseFormats {
		tr := tar.NewReader(bytes.NewReader(sparseTar(t, f, 1<<20)))
		tr.Next()
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		n, err := io.Copy(io.Discard, tr)
		if err != nil || n != 1<<20 || !isSparse(hdr) {
			t.Errorf("%s: entry %q reads %d bytes (%v), sparse %v", f, hdr.Name, n, err, isSparse(hdr))
		}
	}
}

// TestExtractRefusesSparse: sparse entries of every format are refused
// (their few bytes expand to the claimed size), by extraction into a tree,
// by the single-executable installer and by checkTar, even when the limit
// would let them through; nothing of their size is written.
func TestExtractRefusesSparse(t *testing.T) {
	const claimed = 64 << 20
	for _, f := range sparseFormats {
		t.Run(f, func(t *testing.T) {
			data := sparseTar(t, f, claimed)
			fsys, root := tempOsFs(t)
			counting := &countingFs{Fs: fsys}
			_, err := extractBytes(t, counting, filepath.Join(root, "stage"), data, 1<<40)
			if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "sparse") || !strings.Contains(err.Error(), "big") {
				t.Errorf("extractTar: %v, want the sparse entry refused", err)
			}
			if n := counting.written.Load(); n > 1<<20 {
				t.Errorf("extractTar wrote %d bytes", n)
			}
			if _, _, err := checkTar(context.Background(), "test.tar", bytes.NewReader(data), 1<<40, clientLimits); !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "sparse") {
				t.Errorf("checkTar: %v, want the sparse entry refused", err)
			}
			in := &installer{fs: counting, dir: filepath.Join(root, "exe"), singleExe: true}
			err = in.installExecutable(context.Background(), bytes.NewReader(data), 1<<40)
			if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "sparse") {
				t.Errorf("installExecutable: %v, want the sparse entry refused", err)
			}
			if n := counting.written.Load(); n > 1<<20 {
				t.Errorf("%d bytes written", n)
			}
		})
	}
}

// countingFs counts the bytes written through the files it opens.
type countingFs struct {
	afero.Fs
	written atomic.Int64
}

func (c *countingFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	f, err := c.Fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &countingFile{File: f, n: &c.written}, nil
}

func (c *countingFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	return c.Fs.(afero.Lstater).LstatIfPossible(name)
}

func (c *countingFs) SymlinkIfPossible(oldname, newname string) error {
	return c.Fs.(afero.Linker).SymlinkIfPossible(oldname, newname)
}

type countingFile struct {
	afero.File
	n *atomic.Int64
}

func (f *countingFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.n.Add(int64(n))
	return n, err
}

// TestUpdateArchiveNotItsSignedTar: a hostile publisher (or a broken
// repository) signs an archive whose tar is not the signed tar_size and
// tar_hash. The full-archive path must refuse it before the commit, as
// the patch path does: nothing is installed, nothing is kept as a patch
// base, and the error says why.
func TestUpdateArchiveNotItsSignedTar(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprint("single executable ", single), func(t *testing.T) {
			repo := newTestRepo(t, false)
			files1, files2 := releaseFiles(1), releaseFiles(2)
			if single {
				files1, files2 = map[string]string{"app": "v1"}, map[string]string{"app": "v2"}
			}
			v1, v2 := buildRelease(t, "1.0", files1), buildRelease(t, "2.0", files2)
			repo.publishRelease("app", v1, nil, false, "")
			// 2.0's archive, signed with a tar hash that is not its tar's
			// (its own size, so only the hash tells).
			wrong := bytes.Clone(v2.tar)
			wrong[len(wrong)-1] ^= 1
			custom, err := ArchiveMeta{TarSize: int64(len(v2.tar)), TarHash: sha256hex(wrong)}.Custom()
			if err != nil {
				t.Fatal(err)
			}
			repo.addTarget("app-2.0.tar.gz", v2.archive, json.RawMessage(custom))
			repo.publish()
			fsys, cfg := osClientConfig(t, repo, "1.0")
			cfg.SingleExecutable = single
			if single {
				cfg.InstallDir = filepath.Join(filepath.Dir(cfg.InstallDir), "app.exe")
				if err := afero.WriteFile(fsys, cfg.InstallDir, []byte("v1"), 0o755); err != nil {
					t.Fatal(err)
				}
			} else {
				writeTree(t, fsys, cfg.InstallDir, v1.files)
			}
			_, err = newTestClient(t, cfg).Update(context.Background())
			if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "not the signed one") || !strings.Contains(err.Error(), "app-2.0.tar.gz") {
				t.Fatalf("update: %v, want the tar refused for not being the signed one", err)
			}
			if single {
				if b, _ := afero.ReadFile(fsys, cfg.InstallDir); string(b) != "v1" {
					t.Errorf("executable is %q, want v1", b)
				}
			} else {
				wantTree(t, fsys, cfg.InstallDir, v1.files)
			}
			if got := cacheFiles(t, fsys, cfg.CacheDir); strings.Contains(got, "app-2.0.tar ") || strings.Contains(got, "installed.json") {
				t.Errorf("cache holds %q", got)
			}
			siblings, _ := afero.ReadDir(fsys, filepath.Dir(cfg.InstallDir))
			for _, fi := range siblings {
				if strings.Contains(fi.Name(), suffixNew) || strings.Contains(fi.Name(), suffixJournal) {
					t.Errorf("left %s", fi.Name())
				}
			}
		})
	}
}

// TestUpdateSparseArchiveFalseTarSize is the attack of issue 9: a
// 400-byte archive with a PAX sparse entry of 3 GiB, signed by a hostile
// publisher with a tar_size that makes room for it. Nothing may be
// installed, and nothing big written.
func TestUpdateSparseArchiveFalseTarSize(t *testing.T) {
	const claimed = 3 << 30
	for _, tc := range []struct {
		name    string
		tarSize int64 // 0: a tufup archive, no tar size signed
		want    string
	}{
		{"false tar_size", claimed + 4096, "impossible for an archive"},
		{"true tar_size", -1, "sparse"},
		{"tufup archive", 0, "sparse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := newTestRepo(t, false)
			v1 := buildRelease(t, "1.0", releaseFiles(1))
			repo.publishRelease("app", v1, nil, false, "")
			tarData := sparseTar(t, "pax0.1", claimed)
			archive := gzipForTest(t, tarData)
			var custom any = map[string]any{"user": nil, "tufup": map[string]any{"required": false}}
			if tc.tarSize != 0 {
				size := tc.tarSize
				if size < 0 {
					size = int64(len(tarData))
				}
				c, err := ArchiveMeta{TarSize: size, TarHash: sha256hex(tarData)}.Custom()
				if err != nil {
					t.Fatal(err)
				}
				custom = json.RawMessage(c)
			}
			repo.addTarget("app-2.0.tar.gz", archive, custom)
			repo.publish()
			osfs, cfg := osClientConfig(t, repo, "1.0")
			counting := &countingFs{Fs: osfs}
			cfg.Fs = counting
			writeTree(t, osfs, cfg.InstallDir, v1.files)
			_, err := newTestClient(t, cfg).Update(context.Background())
			if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("update: %v, want a refusal containing %q", err, tc.want)
			}
			wantTree(t, osfs, cfg.InstallDir, v1.files)
			if n := counting.written.Load(); n > 1<<20 {
				t.Errorf("%d bytes written", n)
			}
			t.Logf("archive of %d bytes refused: %v", len(archive), err)
		})
	}
}

// swapFs stands for another local user who replaces a downloaded file in
// the cache between its check and its use: the first time name is opened
// for reading after it exists, its content becomes evil.
type swapFs struct {
	afero.Fs
	name    string
	evil    []byte
	swapped bool
}

func (s *swapFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	if !s.swapped && filepath.Base(name) == s.name && flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		if ok, _ := afero.Exists(s.Fs, name); ok {
			s.swapped = true
			if err := afero.WriteFile(s.Fs, name, s.evil, 0o644); err != nil {
				return nil, err
			}
		}
	}
	return s.Fs.OpenFile(name, flag, perm)
}

func (s *swapFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	return s.Fs.(afero.Lstater).LstatIfPossible(name)
}

// TestUpdateArchiveSwappedAfterDownload: an archive replaced in the cache
// after its download was checked is caught before the commit, also when
// the repository signs no tar hash (a tufup archive), since the install
// hashes the archive again as it reads it.
func TestUpdateArchiveSwappedAfterDownload(t *testing.T) {
	for _, tufup := range []bool{true, false} {
		t.Run(fmt.Sprint("tufup ", tufup), func(t *testing.T) {
			repo := newTestRepo(t, false)
			v1, v2 := buildRelease(t, "1.0", releaseFiles(1)), buildRelease(t, "2.0", releaseFiles(2))
			repo.publishRelease("app", v1, nil, false, "")
			if tufup {
				repo.addTarget("app-2.0.tar.gz", v2.archive, map[string]any{"user": nil, "tufup": map[string]any{"required": false}})
				repo.publish()
			} else {
				repo.publishRelease("app", v2, nil, false, "")
			}
			osfs, cfg := osClientConfig(t, repo, "1.0")
			evil := buildRelease(t, "2.0", map[string]string{"app": "#!/bin/sh\necho evil\n"})
			cfg.Fs = &swapFs{Fs: osfs, name: "app-2.0.tar.gz", evil: evil.archive}
			writeTree(t, osfs, cfg.InstallDir, v1.files)
			_, err := newTestClient(t, cfg).Update(context.Background())
			if !cfg.Fs.(*swapFs).swapped {
				t.Fatal("the archive was not swapped")
			}
			if !errors.Is(err, ErrSecurity) && !errors.Is(err, ErrUnsafeArchive) {
				t.Fatalf("update: %v, want the swapped archive refused", err)
			}
			if tufup && !strings.Contains(err.Error(), "changed since it was downloaded") {
				t.Errorf("update: %v, want it to say the archive changed", err)
			}
			wantTree(t, osfs, cfg.InstallDir, v1.files)
		})
	}
}
