package ldapsync

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/config"
)

// wireConn is the connection Dial returns: requests are built with go-ldap
// and asn1-ber (filters, controls, errors and result types are theirs), but
// replies are read by readMessage and decodeEntry below instead of go-ldap's
// reader. Why: go-ldap decodes every BER element of every entry into its own
// ber.Packet; reading the benchmark directory's 102,000 entries that way took
// 4.4× as long as the C ldapsearch dump of the same search (BenchmarkLDAPRead,
// BENCHMARKS.md), 63 % of it in asn1-ber's readPacket. decodeEntry makes a
// handful of allocations per entry, whatever its attribute count.
//
// It does what ldapsync needs and nothing more: simple bind, StartTLS,
// search (with controls, paging among them), unbind. One request at a
// time; a Close from another goroutine (ctxConn) ends a request in flight.
// TestWireConnMatchesGoLDAP compares its results with go-ldap's on a real
// slapd; FuzzDecodeEntry feeds the decoder arbitrary bytes.
type wireConn struct {
	nc      net.Conn
	br      *bufio.Reader
	timeout time.Duration

	mu    sync.Mutex // one request at a time
	id    int64
	buf   []byte // the last message read; reused
	wbuf  []byte
	names map[string]string // attribute names seen, so each is allocated once
}

// maxMessage bounds one LDAP message (a group's entry with every member DN
// is the largest the sync reads: 20,000 members ≈ 1 MB). A longer length is
// refused as malformed rather than allocated.
const maxMessage = 256 << 20

// The protocol ops of RFC 4511 used here ([APPLICATION n]; on the wire
// 0x60|n for the constructed ones), and the StartTLS extended operation.
const (
	appBindRequest      = 0
	appBindResponse     = 1
	appUnbindRequest    = 2
	appSearchRequest    = 3
	appSearchEntry      = 4
	appSearchDone       = 5
	appSearchReference  = 19
	appExtendedRequest  = 23
	appExtendedResponse = 24
	oidStartTLS         = "1.3.6.1.4.1.1466.20037"

	// universal tags as they appear on the wire
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagEnumerated  = 0x0a
	tagSequence    = 0x30
	tagSet         = 0x31
	tagControls    = 0xa0 // [0] constructed, in an LDAPMessage
)

// dialWire connects to src.URL (ldap:// or ldaps://), upgrades with StartTLS
// when configured, and binds.
func dialWire(ctx context.Context, src config.LDAPSource, tlsCfg *tls.Config) (*wireConn, error) {
	u, err := parseLDAPURL(src.URL)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: src.DialTimeout}
	var nc net.Conn
	if u.tls {
		nc, err = (&tls.Dialer{NetDialer: d, Config: tlsCfg}).DialContext(ctx, "tcp", u.hostPort)
	} else {
		nc, err = d.DialContext(ctx, "tcp", u.hostPort)
	}
	if err != nil {
		return nil, fmt.Errorf("ldapsync: dial %s: %w", src.URL, err)
	}
	c := newWireConn(nc, src.RequestTimeout)
	// A cancelled dial context ends the handshakes below too.
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	if src.StartTLS {
		if u.tls {
			c.Close()
			return nil, fmt.Errorf("ldapsync: starttls %s: the connection is already TLS (ldaps)", src.URL)
		}
		if err := c.startTLS(tlsCfg); err != nil {
			c.Close()
			return nil, fmt.Errorf("ldapsync: starttls %s: %w", src.URL, err)
		}
	}
	if src.BindDN != "" {
		if err := c.bind(src.BindDN, src.BindPassword.Value()); err != nil {
			c.Close()
			return nil, fmt.Errorf("ldapsync: bind %q: %w", src.BindDN, err)
		}
	}
	if err := ctx.Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("ldapsync: dial %s: %w", src.URL, err)
	}
	return c, nil
}

func newWireConn(nc net.Conn, timeout time.Duration) *wireConn {
	return &wireConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), timeout: timeout, names: map[string]string{}}
}

// Close sends an unbind (best effort) and closes the connection. It may be
// called while a request is in flight (it then only closes).
func (c *wireConn) Close() error {
	if c.mu.TryLock() {
		c.id++
		env := envelope(c.id)
		env.AppendChild(ber.Encode(ber.ClassApplication, ber.TypePrimitive, appUnbindRequest, nil, "Unbind Request"))
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.nc.Write(env.Bytes())
		c.mu.Unlock()
	}
	return c.nc.Close()
}

func envelope(id int64) *ber.Packet {
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	return env
}

// send writes one request and sets the deadline of the whole exchange.
func (c *wireConn) send(op *ber.Packet, controls []ldap.Control) (int64, error) {
	c.id++
	env := envelope(c.id)
	env.AppendChild(op)
	if len(controls) > 0 {
		ctl := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, x := range controls {
			ctl.AppendChild(x.Encode())
		}
		env.AppendChild(ctl)
	}
	var deadline time.Time
	if c.timeout > 0 {
		deadline = time.Now().Add(c.timeout)
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return 0, netErr(err)
	}
	if _, err := c.nc.Write(env.Bytes()); err != nil {
		return 0, netErr(err)
	}
	return c.id, nil
}

// netErr wraps a transport error as go-ldap does (ErrorNetwork).
func netErr(err error) error {
	return ldap.NewError(ldap.ErrorNetwork, err)
}

// reply reads the next message of request id: its protocol op's tag and
// body, and the message's controls element (nil if none).
func (c *wireConn) reply(id int64) (tag byte, body, controls []byte, err error) {
	msg, err := c.readMessage()
	if err != nil {
		return 0, nil, nil, err
	}
	gotID, tag, body, controls, err := splitMessage(msg)
	if err != nil {
		return 0, nil, nil, ldap.NewError(ldap.ErrorNetwork, err)
	}
	if gotID == 0 && tag == 0x60|appExtendedResponse {
		// Unsolicited notification (RFC 4511 4.4.1): the server is closing.
		code, _, diag, _ := parseResult(body)
		return 0, nil, nil, ldap.NewError(ldap.ErrorNetwork,
			fmt.Errorf("server sent a notice of disconnection (result %d): %s", code, diag))
	}
	if gotID != id {
		// wireConn never abandons a request, and the sync drops a
		// connection after any error: a reply to another id is the
		// server's fault, and entries skipped here would make a
		// partial read look complete.
		return 0, nil, nil, ldap.NewError(ldap.ErrorNetwork,
			fmt.Errorf("reply to message %d while message %d is in flight", gotID, id))
	}
	return tag, body, controls, nil
}

// readMessage reads one LDAPMessage (its SEQUENCE's content) into c.buf.
func (c *wireConn) readMessage() ([]byte, error) {
	t, err := c.br.ReadByte()
	if err != nil {
		return nil, netErr(err)
	}
	if t != tagSequence {
		return nil, netErr(fmt.Errorf("malformed message: tag 0x%02x, want a SEQUENCE", t))
	}
	n, err := readLength(c.br)
	if err != nil {
		return nil, netErr(err)
	}
	if cap(c.buf) < n {
		c.buf = make([]byte, n)
	}
	c.buf = c.buf[:n]
	if _, err := io.ReadFull(c.br, c.buf); err != nil {
		return nil, netErr(err)
	}
	return c.buf, nil
}

func readLength(r io.ByteReader) (int, error) {
	b, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	if b < 0x80 {
		return int(b), nil
	}
	k := int(b & 0x7f)
	if k == 0 || k > 4 {
		return 0, fmt.Errorf("malformed message: length of %d bytes", k)
	}
	n := 0
	for range k {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		n = n<<8 | int(b)
	}
	if n > maxMessage {
		return 0, fmt.Errorf("malformed message: %d bytes, more than %d", n, maxMessage)
	}
	return n, nil
}

// tlv splits b into its first element (tag, content) and the rest. Only
// single-byte tags and definite lengths (all LDAP uses) are accepted.
func tlv(b []byte) (tag byte, val, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errors.New("truncated element")
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, errors.New("multi-byte tag")
	}
	n, i := int(b[1]), 2
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return 0, nil, nil, errors.New("bad length")
		}
		n = 0
		for _, x := range b[2 : 2+k] {
			n = n<<8 | int(x)
		}
		i = 2 + k
	}
	if n < 0 || n > len(b)-i {
		return 0, nil, nil, errors.New("element longer than its message")
	}
	return tag, b[i : i+n], b[i+n:], nil
}

// berInt decodes a BER INTEGER or ENUMERATED content (at most 8 bytes).
func berInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 8 {
		return 0, fmt.Errorf("integer of %d bytes", len(b))
	}
	v := int64(int8(b[0]))
	for _, x := range b[1:] {
		v = v<<8 | int64(x)
	}
	return v, nil
}

// splitMessage splits an LDAPMessage's content: messageID, protocolOp (tag
// and content), and the optional controls [0].
func splitMessage(msg []byte) (id int64, tag byte, body, controls []byte, err error) {
	t, v, rest, err := tlv(msg)
	if err != nil || t != tagInteger {
		return 0, 0, nil, nil, fmt.Errorf("malformed message: no message id (%v)", err)
	}
	if id, err = berInt(v); err != nil {
		return 0, 0, nil, nil, fmt.Errorf("malformed message id: %w", err)
	}
	if tag, body, rest, err = tlv(rest); err != nil {
		return 0, 0, nil, nil, fmt.Errorf("malformed message %d: %w", id, err)
	}
	if len(rest) > 0 {
		t, v, _, err := tlv(rest)
		if err != nil {
			return 0, 0, nil, nil, fmt.Errorf("malformed controls of message %d: %w", id, err)
		}
		if t == tagControls {
			controls = v
		}
	}
	return id, tag, body, controls, nil
}

// parseResult reads an LDAPResult: code, matched DN, diagnostic message.
func parseResult(b []byte) (code int64, matched, diag string, err error) {
	t, v, rest, err := tlv(b)
	if err != nil || t != tagEnumerated {
		return 0, "", "", fmt.Errorf("malformed result: no result code")
	}
	if code, err = berInt(v); err != nil {
		return 0, "", "", fmt.Errorf("malformed result code: %w", err)
	}
	t, v, rest, err = tlv(rest)
	if err != nil || t != tagOctetString {
		return 0, "", "", fmt.Errorf("malformed result: no matched DN")
	}
	matched = string(v)
	t, v, _, err = tlv(rest)
	if err != nil || t != tagOctetString {
		return 0, "", "", fmt.Errorf("malformed result: no diagnostic message")
	}
	return code, matched, string(v), nil
}

// resultErr is go-ldap's error for a result: nil on success.
func resultErr(code int64, matched, diag string) error {
	if code == ldap.LDAPResultSuccess {
		return nil
	}
	return &ldap.Error{ResultCode: uint16(code), MatchedDN: matched, Err: errors.New(diag)}
}

// decodeControls decodes a controls element with go-ldap (one per page, so
// its cost does not matter).
func decodeControls(b []byte) ([]ldap.Control, error) {
	var out []ldap.Control
	for len(b) > 0 {
		t, _, rest, err := tlv(b)
		if err != nil || t != tagSequence {
			return nil, fmt.Errorf("malformed control")
		}
		raw := b[:len(b)-len(rest)]
		p, err := ber.DecodePacketErr(raw)
		if err != nil {
			return nil, fmt.Errorf("malformed control: %w", err)
		}
		ctl, err := ldap.DecodeControl(p)
		if err != nil {
			return nil, fmt.Errorf("malformed control: %w", err)
		}
		out = append(out, ctl)
		b = rest
	}
	return out, nil
}

// exchange sends a request that one LDAPResult answers (bind, extended)
// and returns that result as an error (nil on success). The caller holds mu.
func (c *wireConn) exchange(op *ber.Packet, wantTag byte, what string) error {
	id, err := c.send(op, nil)
	if err != nil {
		return err
	}
	tag, body, _, err := c.reply(id)
	if err != nil {
		return err
	}
	if tag != wantTag {
		return ldap.NewError(ldap.ErrorUnexpectedResponse, fmt.Errorf("%s answered with tag 0x%02x", what, tag))
	}
	code, matched, diag, err := parseResult(body)
	if err != nil {
		return ldap.NewError(ldap.ErrorNetwork, err)
	}
	return resultErr(code, matched, diag)
}

func (c *wireConn) bind(dn, password string) error {
	if password == "" {
		// An unauthenticated bind (RFC 4513 5.1.2): servers may accept it
		// as anonymous. Refused, as go-ldap's Bind does.
		return ldap.NewError(ldap.ErrorEmptyPassword, errors.New("empty password for a bind DN"))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, appBindRequest, nil, "Bind Request")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "Version"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "User Name"))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, "Password"))
	return c.exchange(op, 0x60|appBindResponse, "bind")
}

func (c *wireConn) startTLS(cfg *tls.Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, appExtendedRequest, nil, "Start TLS")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oidStartTLS, "TLS Extended Command"))
	if err := c.exchange(op, 0x60|appExtendedResponse, "starttls"); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		return ldap.NewError(ldap.ErrorNetwork, errors.New("data after the starttls response"))
	}
	tc := tls.Client(c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		return netErr(err)
	}
	c.nc = tc
	c.br.Reset(tc)
	return nil
}

// Search runs one search request and collects its entries, referrals and
// the controls of its done message. Like go-ldap, a result code other than
// success is returned as an *ldap.Error beside what was read.
func (c *wireConn) Search(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, appSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, req.BaseDN, "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(req.Scope), "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(req.DerefAliases), "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(req.SizeLimit), "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(req.TimeLimit), "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, req.TypesOnly, "Types Only"))
	filter, err := ldap.CompileFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	op.AppendChild(filter)
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range req.Attributes {
		attrs.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, "Attribute"))
	}
	op.AppendChild(attrs)
	id, err := c.send(op, req.Controls)
	if err != nil {
		return nil, err
	}
	res := &ldap.SearchResult{Entries: make([]*ldap.Entry, 0, 64)}
	for {
		tag, body, controls, err := c.reply(id)
		if err != nil {
			return res, err
		}
		switch tag {
		case 0x60 | appSearchEntry:
			e, err := c.decodeEntry(body)
			if err != nil {
				return res, ldap.NewError(ldap.ErrorNetwork, err)
			}
			res.Entries = append(res.Entries, e)
		case 0x60 | appSearchReference:
			for b := body; len(b) > 0; {
				t, v, rest, err := tlv(b)
				if err != nil || t != tagOctetString {
					return res, ldap.NewError(ldap.ErrorNetwork, errors.New("malformed search reference"))
				}
				res.Referrals = append(res.Referrals, string(v))
				b = rest
			}
		case 0x60 | appSearchDone:
			code, matched, diag, err := parseResult(body)
			if err != nil {
				return res, ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("malformed SearchResultDone: %w", err))
			}
			res.ResultCode, res.DiagnosticMessage = uint16(code), diag
			if err := resultErr(code, matched, diag); err != nil {
				return res, err
			}
			if controls != nil {
				if res.Controls, err = decodeControls(controls); err != nil {
					return res, ldap.NewError(ldap.ErrorNetwork, err)
				}
			}
			return res, nil
		default:
			return res, ldap.NewError(ldap.ErrorUnexpectedResponse, fmt.Errorf("search answered with tag 0x%02x", tag))
		}
	}
}

// decodeEntry decodes a SearchResultEntry's content. All value bytes of the
// entry are copied into one block, and one string of it backs every
// Values string; the DN has its own string (it outlives the entry in the
// sync's indexes). Attribute names are interned per connection.
func (c *wireConn) decodeEntry(b []byte) (*ldap.Entry, error) {
	t, dn, rest, err := tlv(b)
	if err != nil || t != tagOctetString {
		return nil, fmt.Errorf("malformed entry: no DN")
	}
	t, list, rest, err := tlv(rest)
	if err != nil || t != tagSequence || len(rest) > 0 {
		return nil, fmt.Errorf("malformed entry %q: no attribute list, or bytes after it", dn)
	}
	// First pass: count attributes, values and value bytes, and check the
	// structure, so the second pass allocates exactly once per kind.
	nAttrs, nVals, nBytes := 0, 0, 0
	for p := list; len(p) > 0; {
		t, attr, next, err := tlv(p)
		if err != nil || t != tagSequence {
			return nil, fmt.Errorf("malformed entry %q: attribute %d", dn, nAttrs)
		}
		t, _, vs, err := tlv(attr)
		if err != nil || t != tagOctetString {
			return nil, fmt.Errorf("malformed entry %q: attribute %d has no type", dn, nAttrs)
		}
		t, set, after, err := tlv(vs)
		if err != nil || t != tagSet || len(after) > 0 {
			return nil, fmt.Errorf("malformed entry %q: attribute %d has no value set, or bytes after it", dn, nAttrs)
		}
		for q := set; len(q) > 0; {
			t, v, r, err := tlv(q)
			if err != nil || t != tagOctetString {
				return nil, fmt.Errorf("malformed entry %q: attribute %d: bad value", dn, nAttrs)
			}
			nVals++
			nBytes += len(v)
			q = r
		}
		nAttrs++
		p = next
	}
	block := make([]byte, 0, nBytes)
	for p := list; len(p) > 0; {
		_, attr, next, _ := tlv(p)
		_, _, vs, _ := tlv(attr)
		_, set, _, _ := tlv(vs)
		for q := set; len(q) > 0; {
			_, v, r, _ := tlv(q)
			block = append(block, v...)
			q = r
		}
		p = next
	}
	str := string(block)
	e := &ldap.Entry{DN: string(dn), Attributes: make([]*ldap.EntryAttribute, nAttrs)}
	attrs := make([]ldap.EntryAttribute, nAttrs)
	values := make([]string, nVals)
	bytesVals := make([][]byte, nVals)
	off, vi := 0, 0
	for i, p := 0, list; len(p) > 0; i++ {
		_, attr, next, _ := tlv(p)
		_, name, vs, _ := tlv(attr)
		_, set, _, _ := tlv(vs)
		a := &attrs[i]
		a.Name = c.name(name)
		start := vi
		for q := set; len(q) > 0; {
			_, v, r, _ := tlv(q)
			values[vi] = str[off : off+len(v)]
			bytesVals[vi] = block[off : off+len(v) : off+len(v)]
			off += len(v)
			vi++
			q = r
		}
		a.Values, a.ByteValues = values[start:vi:vi], bytesVals[start:vi:vi]
		e.Attributes[i] = a
		p = next
	}
	return e, nil
}

// name returns the interned attribute name.
func (c *wireConn) name(b []byte) string {
	if s, ok := c.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(c.names) < 1024 {
		c.names[s] = s
	}
	return s
}

// ldapURL is what dialWire needs of an ldap:// or ldaps:// URL.
type ldapURL struct {
	tls      bool
	hostPort string
}

func parseLDAPURL(raw string) (ldapURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return ldapURL{}, fmt.Errorf("ldapsync: dial %s: %w", raw, err)
	}
	host, port := u.Hostname(), u.Port()
	switch u.Scheme {
	case "ldap":
		if port == "" {
			port = "389"
		}
		return ldapURL{hostPort: net.JoinHostPort(host, port)}, nil
	case "ldaps":
		if port == "" {
			port = "636"
		}
		return ldapURL{tls: true, hostPort: net.JoinHostPort(host, port)}, nil
	}
	return ldapURL{}, fmt.Errorf("ldapsync: dial %s: scheme %q is not ldap or ldaps", raw, u.Scheme)
}
