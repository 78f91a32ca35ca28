package durable

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
)

// bbolt reads its pages through a memory map and trusts the offsets they
// hold: a damaged page can send it reading far outside the map, which
// crashes the process (its own consistency check does that from a goroutine
// of its own, where no recover can help). So before bbolt reads anything
// but the meta pages, checkPages reads every page in use from the file
// itself and checks that each offset, length and page number in it stays
// within its page and the file's pages in use.
//
// The layout checked is bbolt's file format version 2, in the machine's
// byte order:
//
//	page header    id uint64, flags uint16, count uint16, overflow uint32
//	meta           magic, version, pageSize, flags uint32; root bucket
//	               (root page uint64, sequence uint64); freelist page,
//	               page count, txid, checksum uint64
//	branch element pos uint32, ksize uint32, child page uint64
//	leaf element   flags uint32, pos uint32, ksize uint32, vsize uint32
//
// where an element's key starts pos bytes after the element itself, a leaf
// element's value follows its key, and the value of a leaf element flagged
// as a bucket is a bucket header (root page, sequence) followed, when the
// root page is 0, by the bucket's only page, inline.
const (
	pageHeaderSize = 16
	elementSize    = 16
	metaSize       = 64
	bucketHeader   = 16

	branchPage   = 0x01
	leafPage     = 0x02
	metaPage     = 0x04
	freelistPage = 0x10

	bucketElement = 0x01
	noFreelist    = ^uint64(0)
	boltMagic     = 0xED0CDAED

	// maxDepth bounds the nesting of pages and buckets: real trees are a
	// few levels deep.
	maxDepth = 64
)

var native = binary.NativeEndian

type pageChecker struct {
	r        io.ReaderAt
	pageSize uint64
	pages    uint64 // pages in use: every page number is below
	seen     map[uint64]bool
}

// checkPages checks the pages reachable from the meta page of transaction
// txid; pageSize and pages are as bbolt read them from that meta page.
func checkPages(r io.ReaderAt, pageSize int, pages uint64, txid uint64) error {
	c := &pageChecker{r: r, pageSize: uint64(pageSize), pages: pages, seen: map[uint64]bool{0: true, 1: true}}
	var root, freelist uint64
	found := false
	for id := range uint64(2) {
		buf := make([]byte, pageHeaderSize+metaSize)
		if _, err := r.ReadAt(buf, int64(id*c.pageSize)); err != nil {
			return fmt.Errorf("meta page %d: %w", id, err)
		}
		m := buf[pageHeaderSize:]
		if native.Uint16(buf[8:]) == metaPage && native.Uint32(m) == boltMagic && native.Uint64(m[48:]) == txid {
			root, freelist, found = native.Uint64(m[16:]), native.Uint64(m[32:]), true
			break
		}
	}
	if !found {
		return fmt.Errorf("no meta page of transaction %d", txid)
	}
	if freelist != noFreelist {
		if err := c.checkFreelist(freelist); err != nil {
			return err
		}
	}
	return c.visit(root, 0)
}

// badMetaPages returns the numbers of the meta pages (0 and 1) that fail
// bbolt's own checks. bbolt writes them in turn, one per transaction, and
// when one is damaged it uses the other: the previous transaction's. A
// power failure while a meta page is written leaves one so; so does damage
// to the file.
func badMetaPages(r io.ReaderAt, pageSize int) []int {
	var bad []int
	for id := range 2 {
		buf := make([]byte, pageHeaderSize+metaSize)
		if _, err := r.ReadAt(buf, int64(id*pageSize)); err != nil {
			bad = append(bad, id)
			continue
		}
		m := buf[pageHeaderSize:]
		h := fnv.New64a()
		h.Write(m[:56])
		if native.Uint32(m) != boltMagic || native.Uint32(m[4:]) != 2 || native.Uint64(m[56:]) != h.Sum64() {
			bad = append(bad, id)
		}
	}
	return bad
}

// read returns page id with its overflow pages.
func (c *pageChecker) read(id uint64) ([]byte, error) {
	if id < 2 || id >= c.pages {
		return nil, fmt.Errorf("page %d is outside the pages in use (2 to %d)", id, c.pages-1)
	}
	if c.seen[id] {
		return nil, fmt.Errorf("page %d is reached twice", id)
	}
	c.seen[id] = true
	head := make([]byte, pageHeaderSize)
	if _, err := c.r.ReadAt(head, int64(id*c.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := native.Uint64(head); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	overflow := uint64(native.Uint32(head[12:]))
	if id+overflow >= c.pages {
		return nil, fmt.Errorf("page %d overflows past the pages in use", id)
	}
	buf := make([]byte, (1+overflow)*c.pageSize)
	if _, err := c.r.ReadAt(buf, int64(id*c.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return buf, nil
}

func (c *pageChecker) checkFreelist(id uint64) error {
	p, err := c.read(id)
	if err != nil {
		return fmt.Errorf("free list: %w", err)
	}
	if native.Uint16(p[8:]) != freelistPage {
		return fmt.Errorf("free list: page %d is not a free list page", id)
	}
	start, count := uint64(pageHeaderSize), uint64(native.Uint16(p[10:]))
	if count == 0xFFFF {
		count = native.Uint64(p[start:])
		start += 8
	}
	if count > (uint64(len(p))-start)/8 {
		return fmt.Errorf("free list: page %d holds %d ids, more than fit", id, count)
	}
	for i := range count {
		if free := native.Uint64(p[start+8*i:]); free < 2 || free >= c.pages {
			return fmt.Errorf("free list: page %d is outside the pages in use", free)
		}
	}
	return nil
}

// visit checks page id and every page and bucket under it.
func (c *pageChecker) visit(id uint64, depth int) error {
	p, err := c.read(id)
	if err != nil {
		return err
	}
	return c.checkNode(p, id, depth)
}

// checkNode checks a branch or leaf page p (page id, or an inline page when
// id is 0).
func (c *pageChecker) checkNode(p []byte, id uint64, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("page %d: pages nest more than %d deep", id, maxDepth)
	}
	if len(p) < pageHeaderSize {
		return fmt.Errorf("page %d: too short", id)
	}
	flags, count := native.Uint16(p[8:]), uint64(native.Uint16(p[10:]))
	size := uint64(len(p))
	if pageHeaderSize+count*elementSize > size {
		return fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	for i := range count {
		at := pageHeaderSize + i*elementSize
		e := p[at : at+elementSize]
		switch flags {
		case branchPage:
			pos, ksize := uint64(native.Uint32(e)), uint64(native.Uint32(e[4:]))
			if at+pos+ksize > size {
				return fmt.Errorf("page %d: element %d's key lies outside the page", id, i)
			}
			if err := c.visit(native.Uint64(e[8:]), depth+1); err != nil {
				return err
			}
		case leafPage:
			eflags, pos := native.Uint32(e), uint64(native.Uint32(e[4:]))
			ksize, vsize := uint64(native.Uint32(e[8:])), uint64(native.Uint32(e[12:]))
			if at+pos+ksize+vsize > size {
				return fmt.Errorf("page %d: element %d lies outside the page", id, i)
			}
			if eflags&bucketElement == 0 {
				continue
			}
			v := p[at+pos+ksize : at+pos+ksize+vsize]
			if len(v) < bucketHeader {
				return fmt.Errorf("page %d: element %d is a bucket too short for its header", id, i)
			}
			var err error
			if root := native.Uint64(v); root == 0 {
				err = c.checkNode(v[bucketHeader:], 0, depth+1)
			} else {
				err = c.visit(root, depth+1)
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("page %d: neither a branch nor a leaf (flags %#x)", id, flags)
		}
	}
	if count == 0 && flags != branchPage && flags != leafPage {
		return fmt.Errorf("page %d: neither a branch nor a leaf (flags %#x)", id, flags)
	}
	return nil
}
