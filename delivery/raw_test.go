package delivery

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/queue"
)

// rawMX is a hand-written SMTP server on a raw socket, so tests can see
// exactly how the client writes: whether it pipelines, which MAIL
// parameters it sends, which EHLO name, from which address.
type rawMX struct {
	ln         net.Listener
	pipelining bool // advertise PIPELINING and insist on it
	starttls   bool // advertise STARTTLS, then refuse it with 454

	mu         sync.Mutex
	conns      int
	remotes    []string
	cmds       []string
	bodies     []string
	violations []string
}

func startRaw(t *testing.T, addr string, pipelining, starttls bool) *rawMX {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	m := &rawMX{ln: ln, pipelining: pipelining, starttls: starttls}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go m.serve(c)
		}
	}()
	return m
}

func (m *rawMX) violate(format string, args ...any) {
	m.mu.Lock()
	m.violations = append(m.violations, fmt.Sprintf(format, args...))
	m.mu.Unlock()
}

func (m *rawMX) record(cmd string) {
	m.mu.Lock()
	m.cmds = append(m.cmds, cmd)
	m.mu.Unlock()
}

func (m *rawMX) serve(c net.Conn) {
	defer c.Close()
	m.mu.Lock()
	m.conns++
	m.remotes = append(m.remotes, c.RemoteAddr().(*net.TCPAddr).IP.String())
	m.mu.Unlock()
	br := bufio.NewReader(c)
	line := func() (string, bool) {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		l, err := br.ReadString('\n')
		if err != nil {
			return "", false
		}
		if !strings.HasSuffix(l, "\r\n") {
			m.violate("line without CRLF: %q", l)
		}
		return strings.TrimRight(l, "\r\n"), true
	}
	fmt.Fprint(c, "220 raw.test ESMTP\r\n")
	for {
		l, ok := line()
		if !ok {
			return
		}
		m.record(l)
		verb := strings.ToUpper(strings.SplitN(l, " ", 2)[0])
		if !m.pipelining && br.Buffered() > 0 && verb != "QUIT" {
			m.violate("client sent more after %q before the reply", l)
		}
		switch verb {
		case "EHLO":
			var b strings.Builder
			b.WriteString("250-raw.test hello\r\n")
			if m.pipelining {
				b.WriteString("250-PIPELINING\r\n")
			}
			if m.starttls {
				b.WriteString("250-STARTTLS\r\n")
			}
			b.WriteString("250-SIZE 10000000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
			fmt.Fprint(c, b.String())
		case "STARTTLS":
			fmt.Fprint(c, "454 4.7.0 TLS not available due to local problem\r\n")
		case "RSET", "NOOP":
			fmt.Fprint(c, "250 2.0.0 ok\r\n")
		case "QUIT":
			fmt.Fprint(c, "221 2.0.0 bye\r\n")
			return
		case "MAIL":
			var replies []string
			replies = append(replies, "250 2.1.0 sender ok")
			if m.pipelining {
				// Read the whole envelope before answering anything: a
				// client that waits for the MAIL reply stalls here.
				for {
					l, ok := line()
					if !ok {
						m.violate("envelope not pipelined")
						return
					}
					m.record(l)
					if strings.HasPrefix(l, "RCPT") {
						replies = append(replies, rcptReply(l))
					} else if l == "DATA" {
						replies = append(replies, "354 go ahead")
						break
					} else {
						m.violate("unexpected %q in envelope", l)
					}
				}
				fmt.Fprint(c, strings.Join(replies, "\r\n")+"\r\n")
			} else {
				fmt.Fprint(c, replies[0]+"\r\n")
				continue
			}
			if !m.readData(c, line) {
				return
			}
		case "RCPT":
			fmt.Fprint(c, rcptReply(l)+"\r\n")
		case "DATA":
			fmt.Fprint(c, "354 go ahead\r\n")
			if !m.readData(c, line) {
				return
			}
		default:
			fmt.Fprint(c, "500 5.5.1 unknown command\r\n")
		}
	}
}

func rcptReply(l string) string {
	if strings.Contains(l, "<bad") {
		return "550-5.1.1 no such user\r\n550 5.1.1 see https://example.test/why"
	}
	return "250 2.1.5 ok"
}

func (m *rawMX) readData(c net.Conn, line func() (string, bool)) bool {
	var body strings.Builder
	for {
		l, ok := line()
		if !ok {
			return false
		}
		if l == "." {
			break
		}
		body.WriteString(strings.TrimPrefix(l, "."))
		body.WriteString("\r\n")
	}
	m.mu.Lock()
	m.bodies = append(m.bodies, body.String())
	m.mu.Unlock()
	fmt.Fprint(c, "250-2.0.0 first line\r\n250 2.0.0 queued as RAW1\r\n")
	return true
}

func TestRawServers(t *testing.T) {
	body8 := "Subject: caf\xc3\xa9\r\n\r\ncaf\xc3\xa9\r\n.dot\r\n"
	tests := []struct {
		name       string
		pipelining bool
		starttls   bool
		body       string
		shaper     bool
		conns      int
		check      func(t *testing.T, m *rawMX, res []queue.Result)
	}{
		{name: "pipelining server gets one envelope write", pipelining: true, body: body8, conns: 1,
			check: func(t *testing.T, m *rawMX, res []queue.Result) {
				mail := findCmd(m.cmds, "MAIL")
				if !strings.Contains(mail, " SIZE=") || !strings.Contains(mail, " BODY=8BITMIME") {
					t.Errorf("MAIL without SIZE/BODY: %q", mail)
				}
			}},
		{name: "non-pipelining server gets lock-step commands", pipelining: false, body: testBody, conns: 1,
			check: func(t *testing.T, m *rawMX, res []queue.Result) {
				if mail := findCmd(m.cmds, "MAIL"); strings.Contains(mail, "BODY=") {
					t.Errorf("7-bit body sent with BODY=: %q", mail)
				}
			}},
		{name: "STARTTLS refused: retried once in clear text", starttls: true, pipelining: true, body: testBody, conns: 2,
			check: func(t *testing.T, m *rawMX, res []queue.Result) {
				if n := strings.Count(strings.Join(m.cmds, "\n"), "STARTTLS"); n != 1 {
					t.Errorf("%d STARTTLS commands, want 1", n)
				}
			}},
		{name: "egress bind address and EHLO name", pipelining: true, body: testBody, conns: 1, shaper: true,
			check: func(t *testing.T, m *rawMX, res []queue.Result) {
				if e := findCmd(m.cmds, "EHLO"); e != "EHLO egress1.petrel.test" {
					t.Errorf("EHLO %q", e)
				}
				if m.remotes[0] != "127.0.0.9" {
					t.Errorf("connected from %s, want egress 127.0.0.9", m.remotes[0])
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.dns.Add("raw.test. 300 IN MX 10 mx.raw.test.", "mx.raw.test. 300 IN A 127.0.0.2")
			m := startRaw(t, f.addr("127.0.0.2"), tc.pipelining, tc.starttls)
			d := f.deliverer(t, func(o *Options) {
				if tc.shaper {
					s := newCountShaper()
					s.egress = mta.Egress{Name: "e1", LocalIP: "127.0.0.9", EHLO: "egress1.petrel.test"}
					o.Shaper = s
				}
			})
			res := d.Deliver(context.Background(), batch("raw.test", "a@raw.test", "bad@raw.test", "c@raw.test"), []byte(tc.body))
			if got := outcomes(res); !sameOutcomes(got, []queue.Outcome{delivered, bounced, delivered}) {
				t.Fatalf("outcomes %v: %+v", got, res)
			}
			if res[0].Reply != "250 2.0.0 first line\nqueued as RAW1" {
				t.Errorf("multi-line data reply %q", res[0].Reply)
			}
			if res[1].Reply != "550 5.1.1 no such user\nsee https://example.test/why" || res[1].Enhanced != "5.1.1" {
				t.Errorf("multi-line rcpt reply %q %q", res[1].Reply, res[1].Enhanced)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if len(m.violations) > 0 {
				t.Fatalf("protocol violations: %v", m.violations)
			}
			if m.conns != tc.conns {
				t.Errorf("%d connections, want %d", m.conns, tc.conns)
			}
			if len(m.bodies) != 1 || m.bodies[0] != tc.body {
				t.Errorf("bodies %q, want %q", m.bodies, tc.body)
			}
			tc.check(t, m, res)
		})
	}
}

func findCmd(cmds []string, verb string) string {
	for _, c := range cmds {
		if strings.HasPrefix(c, verb) {
			return c
		}
	}
	return ""
}
