package notsotuf

// Hostile inputs: what an attacker who controls the server (or the network)
// can put in the bytes the client parses before, or instead of, anything
// signed. Every case must end in a clear error naming the file, never a
// panic, never an allocation sized by an unverified number, and must leave
// the trusted metadata as it was.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/notsotuf/notsotuf/internal/bsdiff/bzip2"
	"github.com/spf13/afero"
)

// mutateSigned returns data (a metadata file) with one field of "signed"
// replaced by raw JSON; field "" replaces the whole "signed" value and a
// field starting with "/" replaces a top-level field. raw is inserted as
// is, even when it is not JSON that encoding/json would accept.
func mutateSigned(t testing.TB, data []byte, field, raw string) []byte {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	switch {
	case field == "":
		top["signed"] = json.RawMessage(raw)
	case strings.HasPrefix(field, "/"):
		top[field[1:]] = json.RawMessage(raw)
	default:
		var signed map[string]json.RawMessage
		if err := json.Unmarshal(top["signed"], &signed); err != nil {
			t.Fatal(err)
		}
		signed[field] = json.RawMessage(raw)
		top["signed"] = rawObject(signed)
	}
	return rawObject(top)
}

// rawObject writes an object of raw values without checking them.
func rawObject(m map[string]json.RawMessage) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:", k)
		b.Write(m[k])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// hostileMutations are applied to each metadata file. Each one changes what
// is signed or breaks the format, so each must be refused.
var hostileMutations = []struct {
	name, field, raw string
}{
	{"version float", "version", "2.5"},
	{"version exponent", "version", "3e0"},
	{"version huge", "version", "123456789012345678901234567890"},
	{"version beyond float64", "version", "1e400"},
	{"version max int64", "version", "9223372036854775807"},
	{"version negative", "version", "-1"},
	{"version string", "version", `"3"`},
	{"version null", "version", "null"},
	{"expires number", "expires", "1893456000"},
	{"expires garbage", "expires", `"the day after tomorrow"`},
	{"expires far future", "expires", `"9999-12-31T23:59:59Z"`},
	{"type wrong", "_type", `"mirrors"`},
	{"type number", "_type", "7"},
	{"spec version", "spec_version", `"99.0.0"`},
	{"meta array", "meta", "[]"},
	{"meta length float", "meta", `{"snapshot.json": {"version": 3, "length": 1.5}}`},
	{"meta length negative", "meta", `{"snapshot.json": {"version": 3, "length": -5}}`},
	{"meta length huge", "meta", `{"snapshot.json": {"version": 3, "length": 99999999999999999999}}`},
	{"keys wrong type", "keys", `"all of them"`},
	{"roles wrong type", "roles", `[1, 2, 3]`},
	{"targets wrong type", "targets", `{"x.tar.gz": {"length": "ten", "hashes": 5}}`},
	{"deep nesting", "extra", strings.Repeat("[", 100000) + strings.Repeat("]", 100000)},
	{"huge string", "extra", `"` + strings.Repeat("A", 1<<20) + `"`},
	{"signed null", "", "null"},
	{"signed array", "", "[]"},
	{"signatures object", "/signatures", "{}"},
	{"signatures bad hex", "/signatures", `[{"keyid": "00", "sig": "zz"}]`},
	{"signatures float", "/signatures", `[{"keyid": 1.5, "sig": 2}]`},
	{"signatures many", "/signatures", "[" + strings.TrimSuffix(strings.Repeat(`{"keyid": "ab", "sig": "cd"},`, 2000), ",") + "]"},
}

// TestHostileMetadata serves malformed versions of each metadata file to a
// client that trusts an earlier version, and checks that each is refused
// with a security error naming the file and that the trusted copy of that
// role is unchanged.
func TestHostileMetadata(t *testing.T) {
	files := []struct {
		role, served string
		next         func(r *testRepo) // makes the repository publish a new version of the file
	}{
		{"root", "metadata/2.root.json", func(r *testRepo) { r.rotate("root") }},
		{"timestamp", "metadata/timestamp.json", func(r *testRepo) { r.publish() }},
		{"snapshot", "metadata/snapshot.json", func(r *testRepo) { r.publish() }},
		{"targets", "metadata/targets.json", func(r *testRepo) { r.publish() }},
	}
	for _, f := range files {
		for _, m := range hostileMutations {
			t.Run(f.role+"/"+m.name, func(t *testing.T) {
				repo := newTestRepo(t, false)
				repo.addTarget("app-1.0.tar.gz", []byte("one"), nil)
				repo.publish()
				fsys := afero.NewMemMapFs()
				if err := repo.tufClient(fsys).refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
				trusted, err := afero.ReadFile(fsys, "/cache/metadata/"+f.role+".json")
				if err != nil {
					t.Fatal(err)
				}
				f.next(repo)
				good := repo.file(f.served)
				bad := mutateSigned(t, good, m.field, m.raw)
				repo.setFile(f.served, bad)

				err = repo.tufClient(fsys).refresh(context.Background())
				if err == nil {
					t.Fatalf("hostile %s accepted", f.served)
				}
				name := strings.TrimPrefix(f.served, "metadata/")
				// Refused as malformed or unsigned, or (too big) at the size cap.
				if !(errors.Is(err, ErrSecurity) || strings.Contains(err.Error(), "more than the allowed")) || !strings.Contains(err.Error(), name) {
					t.Errorf("err = %v, want a security or size error naming %s", err, name)
				}
				after, _ := afero.ReadFile(fsys, "/cache/metadata/"+f.role+".json")
				if !bytes.Equal(after, trusted) {
					t.Errorf("trusted %s.json changed", f.role)
				}
			})
		}
	}
}

// TestHostileMetadataGarbage serves bytes that are not metadata at all.
func TestHostileMetadataGarbage(t *testing.T) {
	for _, body := range []string{"", "{", "null", "[]", `"x"`, "\x00\x01\x02", "<html>502 Bad Gateway</html>", `{"signed": {}, "signatures": []}`} {
		t.Run(fmt.Sprintf("%q", body), func(t *testing.T) {
			repo := newTestRepo(t, false)
			fsys := afero.NewMemMapFs()
			if err := repo.tufClient(fsys).refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			trusted, _ := afero.ReadFile(fsys, "/cache/metadata/timestamp.json")
			repo.publish()
			repo.setFile("metadata/timestamp.json", []byte(body))
			err := repo.tufClient(fsys).refresh(context.Background())
			if !errors.Is(err, ErrSecurity) || !strings.Contains(err.Error(), "timestamp.json") {
				t.Fatalf("err = %v, want a security error naming timestamp.json", err)
			}
			if after, _ := afero.ReadFile(fsys, "/cache/metadata/timestamp.json"); !bytes.Equal(after, trusted) {
				t.Error("trusted timestamp.json changed")
			}
		})
	}
}

// endlessReader yields an endless stream of JSON-looking bytes.
type endlessReader struct{}

func (endlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// TestHostileMetadataEndless: a server that never stops sending a metadata
// file is cut off at the cap of that file (for root and timestamp, fixed
// caps; for snapshot and targets, the caps or the signed lengths), without
// reading or holding much more than the cap.
func TestHostileMetadataEndless(t *testing.T) {
	for _, name := range []string{"2.root.json", "timestamp.json", "snapshot.json", "targets.json"} {
		t.Run(name, func(t *testing.T) {
			repo := newTestRepo(t, false)
			fsys := afero.NewMemMapFs()
			if err := repo.tufClient(fsys).refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			role := strings.TrimPrefix(strings.TrimSuffix(name, ".json"), "2.")
			trusted, _ := afero.ReadFile(fsys, "/cache/metadata/"+role+".json")
			repo.publish()
			var sent int64
			repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/"+name) {
					return false
				}
				n, _ := io.Copy(w, io.LimitReader(endlessReader{}, 1<<30))
				sent += n
				return true
			})
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			err := repo.tufClient(fsys).refresh(context.Background())
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "more than the allowed") {
				t.Fatalf("err = %v, want a size error naming %s", err, name)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("refresh allocated %d MiB for an endless %s", alloc>>20, name)
			}
			if got, _ := afero.ReadFile(fsys, "/cache/metadata/"+role+".json"); !bytes.Equal(got, trusted) {
				t.Errorf("trusted %s.json changed", role)
			}
		})
	}
}

// TestHostileTargetCustom: metadata signed by the targets key (a repository
// mistake or a compromised key) whose custom fields are hostile. Check must
// not fail on them: a patch whose custom does not parse is never planned,
// an archive whose custom does not parse is never offered.
func TestHostileTargetCustom(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	good := map[string]any{"tufup": map[string]any{"tar_size": 10, "tar_hash": hash, "tar_hash_algorithm": "sha256"}, "user": nil}
	tests := []struct {
		name          string
		custom        any
		archiveParses bool // tufup ignores tar fields in an archive's custom
	}{
		{"valid", good, true},
		{"tar_size string", map[string]any{"tufup": map[string]any{"tar_size": "10", "tar_hash": hash}}, true},
		{"tar_size negative", map[string]any{"tufup": map[string]any{"tar_size": -10, "tar_hash": hash}}, true},
		{"tar_hash short", map[string]any{"tufup": map[string]any{"tar_size": 10, "tar_hash": "abcd"}}, true},
		{"tar_hash not hex", map[string]any{"tufup": map[string]any{"tar_size": 10, "tar_hash": strings.Repeat("zz", 32)}}, true},
		{"algorithm md5", map[string]any{"tufup": map[string]any{"tar_size": 10, "tar_hash": hash, "tar_hash_algorithm": "md5"}}, true},
		{"tufup array", map[string]any{"tufup": []int{1}}, false},
		{"required string", map[string]any{"tufup": map[string]any{"required": "yes"}}, false},
		{"notsotuf string", map[string]any{"tufup": map[string]any{}, "notsotuf": "x"}, false},
		{"notsotuf bad hash", map[string]any{"tufup": map[string]any{}, "notsotuf": map[string]any{"tar_size": 1, "tar_hash": "x"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t, false)
			v1 := buildRelease(t, "1.0", releaseFiles(1))
			repo.publishRelease("app", v1, nil, false, "")
			// Version 2.0: archive and patch with the hostile custom.
			repo.addTarget("app-2.0.tar.gz", []byte("archive 2"), tt.custom)
			repo.addTarget("app-2.0.patch", []byte("patch 2"), tt.custom)
			repo.publish()
			fsys := afero.NewMemMapFs()
			writeTree(t, fsys, "/opt/app", v1.files) // a verified patch base
			c := newTestClient(t, repo.config(fsys, "1.0"))
			u, err := c.Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			offered := u != nil && u.Version.String() == "2.0"
			if offered != tt.archiveParses {
				t.Fatalf("release 2.0 offered = %v, want %v (update %+v)", offered, tt.archiveParses, u)
			}
			patched := offered && !u.Plan.Full
			if want := tt.name == "valid"; patched != want {
				t.Fatalf("patch planned = %v, want %v (plan %+v)", patched, want, u.Plan)
			}
		})
	}
}

// craftPatch builds a BSDIFF40 patch from a raw header and raw (not yet
// compressed) control, diff and extra blocks; ctrlLen and diffLen < 0 mean
// "the real compressed lengths".
func craftPatch(t testing.TB, ctrlLen, diffLen, newSize int64, triples [][3]int64, diff, extra []byte, truncate int) []byte {
	t.Helper()
	var ctrl bytes.Buffer
	for _, tr := range triples {
		for _, x := range tr {
			ctrl.Write(offtout(x))
		}
	}
	comp := func(data []byte) []byte {
		var b bytes.Buffer
		zw := bzip2.NewWriter(&b, 1)
		if _, err := zw.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	c, d, e := comp(ctrl.Bytes()), comp(diff), comp(extra)
	if ctrlLen < 0 {
		ctrlLen = int64(len(c))
	}
	if diffLen < 0 {
		diffLen = int64(len(d))
	}
	out := []byte("BSDIFF40")
	out = append(out, offtout(ctrlLen)...)
	out = append(out, offtout(diffLen)...)
	out = append(out, offtout(newSize)...)
	out = append(out, c...)
	out = append(out, d...)
	out = append(out, e...)
	if truncate > 0 && truncate < len(out) {
		out = out[:truncate]
	}
	return out
}

// setHeader overwrites the header number at offset off (8, 16 or 24).
func setHeader(p []byte, off int, x int64) []byte {
	copy(p[off:], offtout(x))
	return p
}

// offtout encodes x as bsdiff does: sign and magnitude, little-endian.
func offtout(x int64) []byte {
	var b [8]byte
	if x < 0 {
		binary.LittleEndian.PutUint64(b[:], uint64(-x))
		b[7] |= 0x80
	} else {
		binary.LittleEndian.PutUint64(b[:], uint64(x))
	}
	return b[:]
}

// TestHostilePatch: patches whose header or control values lie. Apply must
// refuse each with ErrCorruptPatch, write at most what the patch really
// holds, and never allocate according to the header.
func TestHostilePatch(t *testing.T) {
	old := bytes.Repeat([]byte("old data "), 100)
	const huge = int64(1) << 50
	tests := []struct {
		name  string
		patch []byte
	}{
		{"huge new size", craftPatch(t, -1, -1, huge, [][3]int64{{3, 0, 0}}, []byte{0, 0, 0}, nil, 0)},
		{"max new size", craftPatch(t, -1, -1, 1<<63-1, [][3]int64{{3, 0, 0}}, []byte{0, 0, 0}, nil, 0)},
		{"negative new size", craftPatch(t, -1, -1, -5, nil, nil, nil, 0)},
		{"huge control length", craftPatch(t, huge, -1, 3, [][3]int64{{3, 0, 0}}, []byte{0, 0, 0}, nil, 0)},
		{"huge diff length", craftPatch(t, -1, huge, 3, [][3]int64{{3, 0, 0}}, []byte{0, 0, 0}, nil, 0)},
		{"negative control length", setHeader(craftPatch(t, -1, -1, 3, [][3]int64{{3, 0, 0}}, []byte{0, 0, 0}, nil, 0), 8, -8)},
		{"negative diff length", setHeader(craftPatch(t, -1, -1, 3, [][3]int64{{3, 0, 0}}, []byte{0, 0, 0}, nil, 0), 16, -1)},
		{"control length off by one", setHeader(craftPatch(t, -1, -1, 3, [][3]int64{{3, 0, 0}}, []byte{0, 0, 0}, nil, 0), 8, 1)},
		{"huge add in a huge file", craftPatch(t, -1, -1, huge, [][3]int64{{huge, 0, 0}}, []byte{1, 2, 3}, nil, 0)},
		{"huge copy in a huge file", craftPatch(t, -1, -1, huge, [][3]int64{{0, huge, 0}}, nil, []byte("abc"), 0)},
		{"negative add", craftPatch(t, -1, -1, 3, [][3]int64{{-3, 6, 0}}, nil, []byte("abcdef"), 0)},
		{"negative copy", craftPatch(t, -1, -1, 3, [][3]int64{{6, -3, 0}}, make([]byte, 6), nil, 0)},
		{"seek before old", craftPatch(t, -1, -1, 3, [][3]int64{{0, 0, -100}, {3, 0, 0}}, []byte{0, 0, 0}, nil, 0)},
		{"seek overflow", craftPatch(t, -1, -1, 3, [][3]int64{{0, 0, 1<<63 - 1}, {0, 0, 1<<63 - 1}, {3, 0, 0}}, []byte{0, 0, 0}, nil, 0)},
		{"min int64 in control", craftPatch(t, -1, -1, 3, [][3]int64{{-1 << 63, 0, 0}}, nil, nil, 0)},
		{"truncated header", []byte("BSDIFF40\x01\x00")},
		{"truncated control", craftPatch(t, -1, -1, 3, [][3]int64{{3, 0, 0}}, []byte{0, 0, 0}, nil, 40)},
		{"control stream garbage", append(append([]byte("BSDIFF40"), append(append(offtout(10), offtout(10)...), offtout(3)...)...), bytes.Repeat([]byte{0xff}, 30)...)},
		{"magic only", []byte("BSDIFF40")},
		{"empty", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out countWriter
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for _, seekable := range []bool{true, false} {
				var pr io.Reader = bytes.NewReader(tt.patch)
				if !seekable {
					pr = io.MultiReader(pr) // hides ReadAt and Seek
				}
				n, err := Apply(bytes.NewReader(old), int64(len(old)), pr, &out, nil)
				if !errors.Is(err, ErrCorruptPatch) {
					t.Fatalf("seekable=%v: err = %v, want ErrCorruptPatch", seekable, err)
				}
				if n > int64(len(tt.patch))*1000+1<<20 {
					t.Errorf("seekable=%v: wrote %d bytes from a %d-byte patch", seekable, n, len(tt.patch))
				}
			}
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("Apply allocated %d MiB", alloc>>20)
			}
		})
	}
}

// TestHostilePatchChainSignedSize: a patch that announces (and produces) a
// bigger file than the signed tar_size is stopped at the signed size while
// applying, and no output is left behind.
func TestHostilePatchChainSignedSize(t *testing.T) {
	fsys, root := tempOsFs(t)
	old := bytes.Repeat([]byte("x"), 100)
	if err := afero.WriteFile(fsys, root+"/base.tar", old, 0o644); err != nil {
		t.Fatal(err)
	}
	// 1 MiB of output from a 100-byte old file: copy from extra.
	big := bytes.Repeat([]byte("y"), 1<<20)
	p := craftPatch(t, -1, -1, int64(len(big)), [][3]int64{{0, int64(len(big)), 0}}, nil, big, 0)
	if err := afero.WriteFile(fsys, root+"/evil.patch", p, 0o644); err != nil {
		t.Fatal(err)
	}
	steps := []patchStep{{Name: "app-2.0.patch", Path: root + "/evil.patch", Meta: PatchMeta{TarSize: 4096, TarHash: sha256Hex(big[:4096])}}}
	err := applyPatchChain(context.Background(), fsys, root+"/base.tar", steps, root+"/out.tar", nil)
	if !errors.Is(err, ErrCorruptPatch) || !strings.Contains(err.Error(), "app-2.0.patch") || !strings.Contains(err.Error(), "exceeds the signed tar_size") {
		t.Fatalf("err = %v", err)
	}
	ents, _ := afero.ReadDir(fsys, root)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "base.tar evil.patch" {
		t.Errorf("left behind: %v", names)
	}
}

// TestHostilePoisonedPart: a hostile connection left wrong bytes in the
// partial download (e.g. a slow server cut off by the deadline). Resuming
// from there cannot give the signed hash; the client must start over once
// instead of reporting the honest repository as tampered. A server that
// really sends wrong bytes is still reported, after one fresh attempt.
func TestHostilePoisonedPart(t *testing.T) {
	data := randomBytes(64<<10, 5)
	fsys := afero.NewMemMapFs()
	if err := afero.WriteFile(fsys, "/cache/blob.part", []byte("{{{{{{{{{{"), 0o644); err != nil {
		t.Fatal(err)
	}
	honest := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	})
	err := honest.remote().fetchTarget(context.Background(), fsys, honest.srv.URL+"/blob", "/cache/blob", int64(len(data)), sha256hex(data), nil)
	if err != nil {
		t.Fatalf("honest server after a poisoned part: %v", err)
	}
	if got, _ := afero.ReadFile(fsys, "/cache/blob"); !bytes.Equal(got, data) {
		t.Fatal("downloaded file differs")
	}
	if strings.Join(honest.ranges, ",") != "bytes=10-," {
		t.Errorf("requests with ranges %q, want a resume then one fresh download", honest.ranges)
	}

	evil := bytes.Clone(data)
	evil[5000] ^= 1
	liar := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(evil))
	})
	afero.WriteFile(fsys, "/cache/other.part", data[:1000], 0o644)
	err = liar.remote().fetchTarget(context.Background(), fsys, liar.srv.URL+"/blob", "/cache/other", int64(len(data)), sha256hex(data), nil)
	if !errors.Is(err, ErrSecurity) || len(liar.ranges) != 2 {
		t.Fatalf("lying server: err = %v after %d requests, want a security error after 2", err, len(liar.ranges))
	}
	if ok, _ := afero.Exists(fsys, "/cache/other.part"); ok {
		t.Error("part of a lying server kept")
	}
}

// FuzzPatchChain feeds arbitrary patch bytes through the client's whole
// patch path (applyPatchChain: streaming apply, signed size and hash
// checks, atomic output). Whatever the bytes, the result is the signed tar
// or an error, and no temporary file is left behind.
func FuzzPatchChain(f *testing.F) {
	old := bytes.Repeat([]byte("old tar contents "), 64)
	want := append(bytes.Repeat([]byte("old tar contents "), 60), []byte("and some new bytes")...)
	var p bytes.Buffer
	if err := Diff(old, want, &p, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(p.Bytes())
	f.Add(craftPatch(f, -1, -1, int64(len(want)), [][3]int64{{0, int64(len(want)), 0}}, nil, want, 0))
	f.Add(craftPatch(f, -1, -1, 1<<40, [][3]int64{{1 << 40, 0, 0}}, []byte{1}, nil, 0))
	f.Add([]byte("BSDIFF40"))
	meta := PatchMeta{TarSize: int64(len(want)), TarHash: sha256Hex(want)}
	f.Fuzz(func(t *testing.T, patch []byte) {
		fsys := afero.NewMemMapFs()
		afero.WriteFile(fsys, "/c/base.tar", old, 0o644)
		afero.WriteFile(fsys, "/c/app-2.patch", patch, 0o644)
		steps := []patchStep{{Name: "app-2.patch", Path: "/c/app-2.patch", Meta: meta}}
		err := applyPatchChain(context.Background(), fsys, "/c/base.tar", steps, "/c/out.tar", nil)
		names, _ := afero.ReadDir(fsys, "/c")
		var got []string
		for _, n := range names {
			got = append(got, n.Name())
		}
		if err != nil {
			if strings.Join(got, " ") != "app-2.patch base.tar" {
				t.Fatalf("failed chain left %v", got)
			}
			return
		}
		out, _ := afero.ReadFile(fsys, "/c/out.tar")
		if !bytes.Equal(out, want) {
			t.Fatal("chain succeeded with an output other than the signed tar")
		}
	})
}
