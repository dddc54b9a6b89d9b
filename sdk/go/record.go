package wedge

import (
	"encoding/binary"
	"errors"
)

// A record is how the host and the SDK pass a list of strings (docs/go-sdk.md):
// a 32-bit little-endian count, then each string as a 32-bit little-endian
// length followed by its bytes.

// maxFields bounds how many strings a record may hold.
const maxFields = 1 << 16

var errRecord = errors.New("wedge: malformed record from the host")

func encodeRecord(fields []string) []byte {
	n := 4
	for _, f := range fields {
		n += 4 + len(f)
	}
	b := make([]byte, 4, n)
	binary.LittleEndian.PutUint32(b, uint32(len(fields)))
	for _, f := range fields {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func decodeRecord(b []byte) ([]string, error) {
	if len(b) < 4 {
		return nil, errRecord
	}
	count := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if count > maxFields || int(count)*4 > len(b) {
		return nil, errRecord
	}
	// One copy of the whole record; the fields are slices of it.
	s := string(b)
	fields := make([]string, 0, count)
	for i := uint32(0); i < count; i++ {
		if len(s) < 4 {
			return nil, errRecord
		}
		n := uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		s = s[4:]
		if uint64(n) > uint64(len(s)) {
			return nil, errRecord
		}
		fields = append(fields, s[:n])
		s = s[n:]
	}
	if len(s) != 0 {
		return nil, errRecord
	}
	return fields, nil
}
