package audit

import (
	"strconv"
	"unicode/utf8"
)

// appendCanonical appends the canonical form of c: byte for byte what
// encoding/json.Marshal(c) produces (field order and names from the struct
// tags, HTML-safe string escaping), written by hand because hashing is on
// the path of every audited write and the reflective encoder was about a
// tenth of a bulk load. TestCanonicalMatchesEncodingJSON keeps the two equal.
func appendCanonical(dst []byte, c *canonical) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, c.Seq, 10)
	dst = appendField(dst, `,"time":`, c.Time)
	dst = appendField(dst, `,"actor":`, c.Actor)
	dst = appendField(dst, `,"action":`, c.Action)
	dst = appendField(dst, `,"objectType":`, c.ObjectType)
	dst = appendField(dst, `,"objectId":`, c.ObjectID)
	dst = appendField(dst, `,"before":`, c.Before)
	dst = appendField(dst, `,"after":`, c.After)
	dst = appendField(dst, `,"runId":`, c.RunID)
	dst = appendField(dst, `,"requestId":`, c.RequestID)
	dst = appendField(dst, `,"prevHash":`, c.PrevHash)
	return append(dst, '}')
}

func appendField(dst []byte, key, v string) []byte {
	return appendJSONString(append(dst, key...), v)
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding with HTML escaping:
// ", \ and control characters escaped, <, > and & as \u00XX, invalid UTF-8
// as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
