package bzip2

import (
	"github.com/notsotuf/notsotuf/internal/bsdiff/sais"
)

// encoder holds the scratch buffers of one block encoding; one per worker.
type encoder struct {
	tt    []byte  // block twice, for the rotation sort
	sa    []int32 // suffix array of tt
	bwt   []byte
	mtfv  []uint16
	sel   []uint8
	selMT []uint8
}

// encode encodes one block (RLE1 output, 1..blockMax+4 bytes) into its bits,
// from the block magic to the last symbol.
func (e *encoder) encode(block []byte) encoded {
	n := len(block)
	crc := blockCRC(block)

	// Burrows-Wheeler transform: rotations sorted as the suffixes of the
	// block written twice.
	e.tt = append(append(e.tt[:0], block...), block...)
	if cap(e.sa) < 2*n {
		e.sa = make([]int32, 2*n)
	}
	sa := e.sa[:2*n]
	sais.Build(e.tt, sa)
	if cap(e.bwt) < n {
		e.bwt = make([]byte, n)
	}
	bwt := e.bwt[:n]
	origPtr := 0
	j := 0
	for _, i := range sa {
		if int(i) >= n {
			continue
		}
		if i == 0 {
			origPtr = j
			bwt[j] = block[n-1]
		} else {
			bwt[j] = block[i-1]
		}
		j++
	}

	// Symbol map.
	var inUse [256]bool
	for _, c := range block {
		inUse[c] = true
	}
	var unseqToSeq [256]byte
	nInUse := 0
	for i, u := range inUse {
		if u {
			unseqToSeq[i] = byte(nInUse)
			nInUse++
		}
	}

	// Move-to-front and run-length coding of zeros (RUNA=0, RUNB=1).
	eob := nInUse + 1
	alphaSize := nInUse + 2
	var freq [258]int32
	mtfv := e.mtfv[:0]
	var yy [256]byte
	for i := range nInUse {
		yy[i] = byte(i)
	}
	zPend := 0
	flushZeros := func() {
		zPend--
		for {
			if zPend&1 != 0 {
				mtfv = append(mtfv, 1)
				freq[1]++
			} else {
				mtfv = append(mtfv, 0)
				freq[0]++
			}
			if zPend < 2 {
				break
			}
			zPend = (zPend - 2) / 2
		}
		zPend = 0
	}
	for _, c := range bwt {
		ll := unseqToSeq[c]
		if yy[0] == ll {
			zPend++
			continue
		}
		if zPend > 0 {
			flushZeros()
		}
		// move ll to front
		prev := yy[0]
		yy[0] = ll
		k := 1
		for yy[k] != ll {
			prev, yy[k] = yy[k], prev
			k++
		}
		yy[k] = prev
		mtfv = append(mtfv, uint16(k+1))
		freq[k+1]++
	}
	if zPend > 0 {
		flushZeros()
	}
	mtfv = append(mtfv, uint16(eob))
	freq[eob]++
	e.mtfv = mtfv
	nMTF := len(mtfv)

	// Huffman tables (libbzip2's sendMTFValues).
	var lens [maxGroups][258]uint8
	for t := range lens {
		for v := range alphaSize {
			lens[t][v] = 15
		}
	}
	var nGroups int
	switch {
	case nMTF < 200:
		nGroups = 2
	case nMTF < 600:
		nGroups = 3
	case nMTF < 1200:
		nGroups = 4
	case nMTF < 2400:
		nGroups = 5
	default:
		nGroups = 6
	}
	{
		nPart := nGroups
		remF := int32(nMTF)
		gs := 0
		for nPart > 0 {
			tFreq := remF / int32(nPart)
			ge := gs - 1
			var aFreq int32
			for aFreq < tFreq && ge < alphaSize-1 {
				ge++
				aFreq += freq[ge]
			}
			if ge > gs && nPart != nGroups && nPart != 1 && (nGroups-nPart)%2 == 1 {
				aFreq -= freq[ge]
				ge--
			}
			for v := range alphaSize {
				if v >= gs && v <= ge {
					lens[nPart-1][v] = 0
				} else {
					lens[nPart-1][v] = 15
				}
			}
			nPart--
			gs = ge + 1
			remF -= aFreq
		}
	}
	nSel := (nMTF + groupSize - 1) / groupSize
	if cap(e.sel) < nSel {
		e.sel = make([]uint8, nSel)
		e.selMT = make([]uint8, nSel)
	}
	sel := e.sel[:nSel]
	var rfreq [maxGroups][258]int32
	for range nIters {
		rfreq = [maxGroups][258]int32{}
		for g := range nSel {
			gs := g * groupSize
			ge := min(gs+groupSize, nMTF)
			var cost [maxGroups]int32
			if nGroups == 6 {
				// the common case, unrolled over tables
				l0, l1, l2, l3, l4, l5 := &lens[0], &lens[1], &lens[2], &lens[3], &lens[4], &lens[5]
				var c0, c1, c2, c3, c4, c5 int32
				for _, v := range mtfv[gs:ge] {
					c0 += int32(l0[v])
					c1 += int32(l1[v])
					c2 += int32(l2[v])
					c3 += int32(l3[v])
					c4 += int32(l4[v])
					c5 += int32(l5[v])
				}
				cost = [maxGroups]int32{c0, c1, c2, c3, c4, c5}
			} else {
				for _, v := range mtfv[gs:ge] {
					for t := range nGroups {
						cost[t] += int32(lens[t][v])
					}
				}
			}
			bt := 0
			bc := int32(999999999)
			for t := range nGroups {
				if cost[t] < bc {
					bc = cost[t]
					bt = t
				}
			}
			sel[g] = uint8(bt)
			rf := &rfreq[bt]
			for _, v := range mtfv[gs:ge] {
				rf[v]++
			}
		}
		for t := range nGroups {
			makeCodeLengths(lens[t][:alphaSize], rfreq[t][:alphaSize], maxCodeLen)
		}
	}

	var codes [maxGroups][258]uint32
	for t := range nGroups {
		minLen, maxLen := uint8(32), uint8(0)
		for _, l := range lens[t][:alphaSize] {
			minLen = min(minLen, l)
			maxLen = max(maxLen, l)
		}
		vec := uint32(0)
		for l := minLen; l <= maxLen; l++ {
			for i := range alphaSize {
				if lens[t][i] == l {
					codes[t][i] = vec
					vec++
				}
			}
			vec <<= 1
		}
	}

	// Emit the block.
	var bw bitWriter
	bw.out = make([]byte, 0, nMTF/2+1024)
	bw.write(24, 0x314159)
	bw.write(24, 0x265359)
	bw.write(32, crc)
	bw.write(1, 0)
	bw.write(24, uint32(origPtr))
	var inUse16 uint32
	for i := range 16 {
		for j := range 16 {
			if inUse[i*16+j] {
				inUse16 |= 1 << (15 - i)
				break
			}
		}
	}
	bw.write(16, inUse16)
	for i := range 16 {
		if inUse16&(1<<(15-i)) == 0 {
			continue
		}
		var m uint32
		for j := range 16 {
			if inUse[i*16+j] {
				m |= 1 << (15 - j)
			}
		}
		bw.write(16, m)
	}
	bw.write(3, uint32(nGroups))
	bw.write(15, uint32(nSel))
	var pos [maxGroups]uint8
	for i := range nGroups {
		pos[i] = uint8(i)
	}
	for _, s := range sel {
		// move-to-front of the selector, written in unary
		k := 0
		for pos[k] != s {
			k++
		}
		copy(pos[1:k+1], pos[:k])
		pos[0] = s
		for range k {
			bw.write(1, 1)
		}
		bw.write(1, 0)
	}
	for t := range nGroups {
		cur := lens[t][0]
		bw.write(5, uint32(cur))
		for i := range alphaSize {
			for cur < lens[t][i] {
				bw.write(2, 2)
				cur++
			}
			for cur > lens[t][i] {
				bw.write(2, 3)
				cur--
			}
			bw.write(1, 0)
		}
	}
	for g, s := range sel {
		gs := g * groupSize
		ge := min(gs+groupSize, nMTF)
		l := &lens[s]
		c := &codes[s]
		for _, v := range mtfv[gs:ge] {
			bw.write(uint(l[v]), c[v])
		}
	}
	nbits := bw.total
	bw.pad()
	return encoded{crc: crc, bits: bw.out, nbits: nbits}
}

// makeCodeLengths is libbzip2's BZ2_hbMakeCodeLengths: Huffman code lengths
// for freq, limited to maxLen bits by flattening the frequencies until they
// fit.
func makeCodeLengths(lens []uint8, freq []int32, maxLen int) {
	alphaSize := len(freq)
	var heap [260]int32
	var weight [516]int32
	var parent [516]int32
	for i := range alphaSize {
		f := freq[i]
		if f == 0 {
			f = 1
		}
		weight[i+1] = f << 8
	}
	for {
		nNodes := alphaSize
		nHeap := 0
		heap[0] = 0
		weight[0] = 0
		parent[0] = -2
		upheap := func(z int) {
			tmp := heap[z]
			for weight[tmp] < weight[heap[z>>1]] {
				heap[z] = heap[z>>1]
				z >>= 1
			}
			heap[z] = tmp
		}
		downheap := func(z int) {
			tmp := heap[z]
			for {
				y := z << 1
				if y > nHeap {
					break
				}
				if y < nHeap && weight[heap[y+1]] < weight[heap[y]] {
					y++
				}
				if weight[tmp] < weight[heap[y]] {
					break
				}
				heap[z] = heap[y]
				z = y
			}
			heap[z] = tmp
		}
		for i := 1; i <= alphaSize; i++ {
			parent[i] = -1
			nHeap++
			heap[nHeap] = int32(i)
			upheap(nHeap)
		}
		for nHeap > 1 {
			n1 := heap[1]
			heap[1] = heap[nHeap]
			nHeap--
			downheap(1)
			n2 := heap[1]
			heap[1] = heap[nHeap]
			nHeap--
			downheap(1)
			nNodes++
			parent[n1] = int32(nNodes)
			parent[n2] = int32(nNodes)
			w1, w2 := weight[n1], weight[n2]
			d := max(w1&0xff, w2&0xff)
			weight[nNodes] = (w1&^0xff + w2&^0xff) | (1 + d)
			parent[nNodes] = -1
			nHeap++
			heap[nHeap] = int32(nNodes)
			upheap(nHeap)
		}
		tooLong := false
		for i := 1; i <= alphaSize; i++ {
			j := 0
			k := int32(i)
			for parent[k] >= 0 {
				k = parent[k]
				j++
			}
			lens[i-1] = uint8(j)
			if j > maxLen {
				tooLong = true
			}
		}
		if !tooLong {
			return
		}
		for i := 1; i <= alphaSize; i++ {
			j := weight[i] >> 8
			j = 1 + j/2
			weight[i] = j << 8
		}
	}
}

var crcTable = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04c11db7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// blockCRC is the CRC of the bytes the RLE1-coded block stands for.
func blockCRC(block []byte) uint32 {
	c := ^uint32(0)
	run := 0
	prev := -1
	for i := 0; i < len(block); i++ {
		b := block[i]
		c = c<<8 ^ crcTable[byte(c>>24)^b]
		if int(b) == prev {
			run++
		} else {
			prev = int(b)
			run = 1
		}
		if run == 4 {
			i++
			for range block[i] {
				c = c<<8 ^ crcTable[byte(c>>24)^b]
			}
			run = 0
			prev = -1
		}
	}
	return ^c
}
