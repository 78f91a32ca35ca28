package durable

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"net/http"
	"time"

	"github.com/gatekit/gatekit/budget"
	"github.com/gatekit/gatekit/idempotency"
)

// The data file is a bbolt database with four buckets:
//
//	gatekit      "format" -> formatVersion: marks a file this package made
//	spend        spendKey -> total spent (8 bytes) + CRC-32C of key and total
//	records      SHA-256 of the idempotency key -> encoded record + CRC-32C
//	expiry       expiry (8 bytes) + SHA-256 of the key -> nothing: records
//	             in order of expiry, so that expired ones are found cheaply
//
// Every integer is big-endian. Record keys are hashed because bbolt wants
// keys of 1 to 32,768 bytes and an idempotency key may be empty or longer;
// the record itself holds the key.
var (
	bucketMeta    = []byte("gatekit")
	bucketSpend   = []byte("spend")
	bucketRecords = []byte("records")
	bucketExpiry  = []byte("expiry")
	keyFormat     = []byte("format")
)

// formatVersion is the version of the layout above, stored under
// gatekit/format.
const formatVersion = "1"

// recordVersion is the first byte of every encoded record.
const recordVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errMalformed is wrapped by decoding errors; Open reports them as
// ErrCorrupt.
var errMalformed = errors.New("malformed")

// spendKey identifies one budget in one period: the key of the spend bucket
// once encoded, and of the write-behind queue.
type spendKey struct {
	tag, kind, id string
	period        budget.Period
	start         int64 // Unix seconds of the period's start; 0 for None
}

func newSpendKey(sp budget.Spend) spendKey {
	k := spendKey{tag: sp.Scope.Tag, kind: sp.Scope.Kind, id: sp.Scope.ID, period: sp.Scope.Period}
	if k.period != budget.None {
		k.start = sp.Start.Unix()
	}
	return k
}

// spend returns the Spend of amount that k stands for, its start in loc.
func (k spendKey) spend(amount budget.Micros, loc *time.Location) budget.Spend {
	sp := budget.Spend{
		Scope:  budget.Scope{Tag: k.tag, Kind: k.kind, ID: k.id, Period: k.period},
		Amount: amount,
	}
	if k.period != budget.None {
		sp.Start = time.Unix(k.start, 0).In(loc)
	}
	return sp
}

// ended reports whether k's period ended by now, on loc's calendar.
func (k spendKey) ended(now time.Time, loc *time.Location) bool {
	return k.period != budget.None && !k.period.End(time.Unix(k.start, 0), loc).After(now)
}

func (k spendKey) encode() []byte {
	b := make([]byte, 0, 3*binary.MaxVarintLen16+len(k.tag)+len(k.kind)+len(k.id)+9)
	b = appendString(b, k.tag)
	b = appendString(b, k.kind)
	b = appendString(b, k.id)
	b = append(b, byte(k.period))
	return binary.BigEndian.AppendUint64(b, uint64(k.start))
}

func decodeSpendKey(b []byte) (spendKey, error) {
	var k spendKey
	d := decoder{b: b}
	k.tag, k.kind, k.id = d.string(), d.string(), d.string()
	k.period = budget.Period(d.byte())
	k.start = int64(d.uint64())
	if d.err != nil || len(d.b) != 0 {
		return k, errMalformed
	}
	sc := budget.Scope{Tag: k.tag, Kind: k.kind, ID: k.id, Period: k.period}
	if sc.Valid() != nil {
		return k, errMalformed
	}
	return k, nil
}

// encodeSpend returns the value stored under key for a total spent.
func encodeSpend(key []byte, total budget.Micros) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(total))
	sum := crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, v)
	return binary.BigEndian.AppendUint32(v, sum)
}

func decodeSpend(key, v []byte) (budget.Micros, error) {
	if len(v) != 12 {
		return 0, errMalformed
	}
	sum := crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, v[:8])
	if binary.BigEndian.Uint32(v[8:]) != sum {
		return 0, errMalformed
	}
	total := budget.Micros(binary.BigEndian.Uint64(v))
	if total < 0 {
		return 0, errMalformed
	}
	return total, nil
}

// pending is a completed idempotency record waiting to be written, or read
// back.
type pending struct {
	key     string
	rec     idempotency.Record
	expires int64 // Unix ms
}

// recordKey returns the key of the records bucket for an idempotency key.
func recordKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// expiryKey returns the key of the expiry bucket for a record.
func expiryKey(expires int64, rkey []byte) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(rkey)), uint64(expires)^(1<<63))
	return append(b, rkey...)
}

// expiryOf returns the expiry that an expiry key holds.
func expiryOf(ekey []byte) int64 {
	return int64(binary.BigEndian.Uint64(ekey) ^ (1 << 63))
}

func encodeRecord(p *pending) []byte {
	r := &p.rec
	n := 64 + len(p.key) + len(r.Fingerprint) + len(r.Body)
	for name, vals := range r.Header {
		n += 2*binary.MaxVarintLen32 + len(name)
		for _, v := range vals {
			n += binary.MaxVarintLen32 + len(v)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(p.expires))
	b = appendString(b, p.key)
	b = appendString(b, r.Fingerprint)
	b = binary.AppendVarint(b, int64(r.Status))
	var flags byte
	if r.Stream {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(r.CreatedAt.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(r.CreatedAt.Nanosecond()))
	b = binary.AppendUvarint(b, uint64(len(r.Header)))
	for name, vals := range r.Header {
		b = appendString(b, name)
		b = binary.AppendUvarint(b, uint64(len(vals)))
		for _, v := range vals {
			b = appendString(b, v)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(r.Body)))
	b = append(b, r.Body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeRecord decodes the value stored under rkey, copying everything out
// of v.
func decodeRecord(rkey, v []byte) (pending, error) {
	var p pending
	if len(v) < 5 || binary.BigEndian.Uint32(v[len(v)-4:]) != crc32.Checksum(v[:len(v)-4], castagnoli) {
		return p, errMalformed
	}
	d := decoder{b: v[:len(v)-4]}
	if d.byte() != recordVersion {
		return p, errMalformed
	}
	p.expires = int64(d.uint64())
	p.key = d.string()
	r := &p.rec
	r.Fingerprint = d.string()
	status := d.varint()
	if status < math.MinInt32 || status > math.MaxInt32 {
		d.fail()
	}
	r.Status = int(status)
	flags := d.byte()
	r.Stream = flags&1 != 0
	sec := int64(d.uint64())
	nsec := d.uint32()
	if nsec >= 1e9 {
		d.fail()
	}
	r.CreatedAt = time.Unix(sec, int64(nsec))
	if n := d.count(); n > 0 {
		r.Header = make(http.Header, n)
		for range n {
			name := d.string()
			vals := make([]string, d.count())
			for i := range vals {
				vals[i] = d.string()
			}
			r.Header[name] = vals
		}
	}
	r.Body = bytes.Clone(d.bytes())
	if d.err != nil || len(d.b) != 0 || flags&^1 != 0 || string(rkey) != string(recordKey(p.key)) {
		return p, errMalformed
	}
	return p, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads what the encoders above wrote; its first failure sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	d.err, d.b = errMalformed, nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uint32() uint32 {
	if len(d.b) < 4 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length, which cannot exceed the bytes left.
func (d *decoder) count() int {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > uint64(len(d.b)-n) {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

// bytes reads a length-prefixed string of bytes, still pointing into d.b.
func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) string() string { return string(d.bytes()) }
