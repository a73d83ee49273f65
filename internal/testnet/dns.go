// Package testnet owns the network peers Petrel's tests talk to on
// loopback: an authoritative DNS server (miekg/dns) answering from zone
// lines the test adds, and scriptable SMTP servers (emersion/go-smtp) that
// play recipient MX hosts. Nothing here is used by production code.
package testnet

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DNS is a test DNS server on 127.0.0.1 serving UDP and TCP on one port.
// Names it has no records for answer NXDOMAIN; names with records of
// other types answer NOERROR with no data.
type DNS struct {
	// Addr is "127.0.0.1:port", usable as a resolver address.
	Addr string

	mu      sync.Mutex
	records map[string][]dns.RR // fqdn (lower) -> records
	rcodes  map[string]int      // fqdn -> forced rcode
	drop    map[string]bool     // fqdn -> never answer
	queries map[string]int      // "fqdn TYPE" -> count

	udp, tcp *dns.Server
}

// StartDNS starts a DNS server on a free loopback port.
func StartDNS() (*DNS, error) {
	d := &DNS{
		records: map[string][]dns.RR{},
		rcodes:  map[string]int{},
		drop:    map[string]bool{},
		queries: map[string]int{},
	}
	var lastErr error
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testnet: dns udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			lastErr = err
			continue
		}
		d.Addr = pc.LocalAddr().String()
		d.udp = &dns.Server{PacketConn: pc, Handler: d}
		d.tcp = &dns.Server{Listener: ln, Handler: d}
		ready := make(chan struct{}, 2)
		d.udp.NotifyStartedFunc = func() { ready <- struct{}{} }
		d.tcp.NotifyStartedFunc = func() { ready <- struct{}{} }
		go d.udp.ActivateAndServe()
		go d.tcp.ActivateAndServe()
		<-ready
		<-ready
		return d, nil
	}
	return nil, fmt.Errorf("testnet: dns: no free port pair: %w", lastErr)
}

// Close stops the server.
func (d *DNS) Close() error {
	d.udp.Shutdown()
	d.tcp.Shutdown()
	return nil
}

// Add adds records given as zone-file lines, e.g.
// "example.test. 300 IN MX 10 mx1.example.test.". It panics on a line that
// does not parse: the lines are written by the test itself.
func (d *DNS) Add(lines ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil || rr == nil {
			panic(fmt.Sprintf("testnet: bad zone line %q: %v", l, err))
		}
		name := strings.ToLower(rr.Header().Name)
		d.records[name] = append(d.records[name], rr)
	}
}

// Remove deletes every record of name (any type).
func (d *DNS) Remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.records, fqdn(name))
}

// SetRcode forces the response code for name (dns.RcodeServerFailure,
// dns.RcodeNameError, ...). dns.RcodeSuccess clears it.
func (d *DNS) SetRcode(name string, rcode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(d.rcodes, fqdn(name))
		return
	}
	d.rcodes[fqdn(name)] = rcode
}

// Drop makes queries for name go unanswered (a resolver timeout).
func (d *DNS) Drop(name string, drop bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drop[fqdn(name)] = drop
}

// Queries returns how many queries of qtype ("MX", "A", ...) name received.
func (d *DNS) Queries(name, qtype string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[fqdn(name)+" "+strings.ToUpper(qtype)]
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

// ServeDNS implements dns.Handler.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	d.mu.Lock()
	d.queries[name+" "+dns.TypeToString[q.Qtype]]++
	if d.drop[name] {
		d.mu.Unlock()
		return
	}
	if rc, ok := d.rcodes[name]; ok {
		d.mu.Unlock()
		m.Rcode = rc
		w.WriteMsg(m)
		return
	}
	rrs, known := d.records[name]
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	d.mu.Unlock()
	if !known {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		// SOA in authority so resolvers can cache the negative answer.
		soa, _ := dns.NewRR(". 60 IN SOA ns.test. hostmaster.test. 1 60 60 60 60")
		m.Ns = append(m.Ns, soa)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		// Answers too big for the client's UDP buffer are truncated with
		// TC set, so clients retry over TCP.
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// Wait is a small helper for polling conditions in tests: it calls cond
// every 10ms until it returns true or timeout passes, and reports whether
// cond became true.
func Wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
