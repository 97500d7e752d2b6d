package exe

import (
	"bytes"
	"compress/zlib"
	"debug/elf"
	"encoding/base64"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tinyELF builds an x86-64 ELF executable by hand: a PT_LOAD segment with
// a .text section, a .bss, and a compressed .debug_info.
func tinyELF(t testing.TB) []byte {
	var dbg bytes.Buffer
	zw := zlib.NewWriter(&dbg)
	zw.Write(bytes.Repeat([]byte("debug info "), 100))
	zw.Close()
	text := []byte{0xe8, 0, 0, 0, 0, 0xc3}
	shstr := []byte("\x00.text\x00.bss\x00.debug_info\x00.shstrtab\x00")
	const ehsize, phsize, shsize = 64, 56, 64
	textOff := uint64(ehsize + phsize)
	chdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(chdr, uint32(elf.COMPRESS_ZLIB))
	binary.LittleEndian.PutUint64(chdr[8:], 1100)
	debugOff := textOff + uint64(len(text))
	debug := append(chdr, dbg.Bytes()...)
	strOff := debugOff + uint64(len(debug))
	shOff := strOff + uint64(len(shstr))
	var b bytes.Buffer
	w := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	w(elf.Header64{
		Ident:     [16]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)},
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     0x401000,
		Phoff:     ehsize,
		Shoff:     shOff,
		Ehsize:    ehsize,
		Phentsize: phsize,
		Phnum:     1,
		Shentsize: shsize,
		Shnum:     5,
		Shstrndx:  4,
	})
	w(elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Off: textOff, Vaddr: 0x401000 + textOff, Paddr: 0x401000 + textOff, Filesz: uint64(len(text)), Memsz: uint64(len(text)), Align: 1})
	b.Write(text)
	b.Write(debug)
	b.Write(shstr)
	w(elf.Section64{})
	w(elf.Section64{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC | elf.SHF_EXECINSTR), Addr: 0x401000 + textOff, Off: textOff, Size: uint64(len(text)), Addralign: 1})
	w(elf.Section64{Name: 7, Type: uint32(elf.SHT_NOBITS), Flags: uint64(elf.SHF_ALLOC | elf.SHF_WRITE), Addr: 0x402000, Size: 4096, Addralign: 8})
	w(elf.Section64{Name: 12, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_COMPRESSED), Off: debugOff, Size: uint64(len(debug)), Addralign: 1})
	w(elf.Section64{Name: 24, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1})
	return b.Bytes()
}

func TestParseTinyELF(t *testing.T) {
	b := tinyELF(t)
	img, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if img.Kind != ELF || img.Arch != AMD64 || len(img.Code) != 1 || len(img.Zlib) != 1 || len(img.Loads) != 1 {
		t.Fatalf("parsed %+v", img)
	}
	if c := img.Code[0]; c.Name != ".text" || c.Size != 6 || c.VA != 0x401000+120 {
		t.Errorf("code %+v", c)
	}
	if z := img.Zlib[0]; z.USize != 1100 || z.Off != 120+6+24 {
		t.Errorf("zlib %+v", z)
	}
	if va, ok := img.VA(122); !ok || va != 0x401000+122 {
		t.Errorf("VA(122) = %#x, %v", va, ok)
	}
	var bss bool
	for _, s := range img.Sections {
		if s.Name == ".bss" && s.Size == 0 && s.Mem == 4096 {
			bss = true
		}
	}
	if !bss {
		t.Errorf("no zero-filled .bss in %+v", img.Sections)
	}
	// Not executables, and one for another architecture.
	for _, bad := range [][]byte{nil, []byte("\x7fELF"), []byte("MZ"), bytes.Repeat([]byte{0xcf, 0xfa, 0xed, 0xfe}, 10), []byte("hello world")} {
		if _, err := Parse(bytes.NewReader(bad), int64(len(bad))); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
	other := bytes.Clone(b)
	binary.LittleEndian.PutUint16(other[18:], uint16(elf.EM_RISCV))
	if _, err := Parse(bytes.NewReader(other), int64(len(other))); err == nil {
		t.Error("Parse of a RISC-V file succeeded")
	}
}

// goTestdata returns the small executables of Go's debug/* tests, when
// this machine has Go's sources.
func goTestdata(t testing.TB) [][]byte {
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Logf("go env GOROOT: %v (no Go sources: Go's debug/* executables are not tried)", err)
		return nil
	}
	root := filepath.Join(strings.TrimSpace(string(goroot)), "src", "debug")
	var out [][]byte
	for _, f := range []string{"elf/testdata/gcc-amd64-linux-exec", "elf/testdata/compressed-64.obj", "elf/testdata/zdebug-test-gcc484-x86-64.obj", "pe/testdata/gcc-amd64-mingw-exec"} {
		if b, err := os.ReadFile(filepath.Join(root, f)); err == nil {
			out = append(out, b)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "macho/testdata/gcc-amd64-darwin-exec.base64")); err == nil {
		if d, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b))); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// checkImage fails unless every range Parse returned lies in the file and
// the lists are sorted without overlaps.
func checkImage(t *testing.T, img *Image, size int64) {
	t.Helper()
	in := func(off, n int64) bool { return off >= 0 && n >= 0 && off <= size && n <= size-off }
	for _, rs := range [][]Range{img.Loads, img.Code} {
		var end int64
		for i, r := range rs {
			if !in(r.Off, r.Size) || r.Size == 0 || (i > 0 && r.Off < end) {
				t.Fatalf("range %+v out of the %d-byte file or overlapping", r, size)
			}
			end = r.Off + r.Size
		}
	}
	var end int64
	for i, z := range img.Zlib {
		if !in(z.Off, z.Size) || (i > 0 && z.Off < end) || z.USize <= 0 {
			t.Fatalf("compressed section %+v out of the %d-byte file", z, size)
		}
		end = z.Off + z.Size
	}
}

func TestParseGoTestdata(t *testing.T) {
	files := goTestdata(t)
	if len(files) == 0 {
		t.Skip("no Go sources")
	}
	for i, b := range files {
		img, err := Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			continue // objects of other kinds are fine to refuse
		}
		checkImage(t, img, int64(len(b)))
		t.Logf("file %d: %v %v, %d loads, %d code, %d compressed", i, img.Kind, img.Arch, len(img.Loads), len(img.Code), len(img.Zlib))
	}
}

// FuzzParse: any bytes give an image whose ranges lie in the file, or an
// error; never a panic.
func FuzzParse(f *testing.F) {
	f.Add(tinyELF(f))
	for _, b := range goTestdata(f) {
		if len(b) <= 64<<10 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		checkImage(t, img, int64(len(b)))
	})
}
