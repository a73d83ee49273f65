package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-mta/petrel/config"
	"github.com/petrel-mta/petrel/dns"
	"github.com/petrel-mta/petrel/mta"
	"github.com/petrel-mta/petrel/queue"
)

// Defaults for zero values in Options.Config.
const (
	defaultMaxIdle      = 16
	maxAddrsPerDelivery = 10
	completeTimeout     = 30 * time.Second
)

// Options configure New.
type Options struct {
	// Hostname is the default EHLO name.
	Hostname string
	// Config is the [delivery] section.
	Config config.DeliveryConfig
	// dns.Resolver looks up MX and address records (required).
	Resolver *dns.Resolver
	// Transport returns a fixed relay "host:port" for a domain
	// (config.Config.TransportFor); nil means always MX.
	Transport func(domain string) (relay string, ok bool)
	// mta.Shaper grants connections and messages; nil means unlimited.
	Shaper mta.Shaper
	// mta.Suppressor is asked per recipient; nil means nothing is suppressed.
	Suppressor mta.Suppressor
	// Classify maps a reply to a bounce reason (bounce.Classify); nil
	// leaves Reason to delivery's own coarse names.
	Classify func(code int, enhanced, text string) (reason string, hard bool)
	// ReturnPath, if set, returns the MAIL FROM address for a transaction
	// carrying the recipients b.Rcpts[i] for i in idx (VERP:
	// bounce.VERP.Encode); it is
	// only asked for messages with a non-null envelope sender, and ""
	// keeps the envelope sender.
	ReturnPath func(b *queue.Batch, idx []int) string
	// MaxIdlePerDest caps idle pooled connections per destination
	// address; 0 means Config.Workers (at least 16).
	MaxIdlePerDest int
	Logger         *slog.Logger
	// Registry receives the delivery metrics; nil means no metrics.
	Registry *prometheus.Registry
}

// Source is where Run takes batches from and reports results to
// (*queue.Queue implements it).
type Source interface {
	Next(ctx context.Context) (*queue.Batch, error)
	Body(msgID string) ([]byte, error)
	Complete(ctx context.Context, b *queue.Batch, r []queue.Result) error
}

// Deliverer delivers batches over SMTP. It is safe for concurrent use.
type Deliverer struct {
	o     Options
	cfg   config.DeliveryConfig
	to    timeouts
	log   *slog.Logger
	pool  *pool
	hosts *hosts
	m     *metrics
}

type metrics struct {
	attempts *prometheus.CounterVec
	seconds  prometheus.Histogram
	open     prometheus.Gauge
	total    prometheus.Counter
	// downDeferrals counts recipients deferred without connecting because
	// every address of their destination was marked down.
	downDeferrals prometheus.Counter
}

// New returns a Deliverer. Zero timeouts in o.Config get the defaults of
// config.Default.
func New(o Options) (*Deliverer, error) {
	if o.Resolver == nil {
		return nil, errors.New("delivery: Options.Resolver is required")
	}
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := o.Config
	def := func(d *config.Duration, v time.Duration) {
		if d.Duration <= 0 {
			d.Duration = v
		}
	}
	def(&cfg.ConnectTimeout, 30*time.Second)
	def(&cfg.CommandTimeout, 5*time.Minute)
	def(&cfg.DataTimeout, 10*time.Minute)
	def(&cfg.IdleTimeout, 30*time.Second)
	def(&cfg.ShutdownTimeout, 30*time.Second)
	if cfg.SMTPPort <= 0 {
		cfg.SMTPPort = 25
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	d := &Deliverer{
		o:   o,
		cfg: cfg,
		to:  timeouts{connect: cfg.ConnectTimeout.Duration, command: cfg.CommandTimeout.Duration, data: cfg.DataTimeout.Duration},
		log: o.Logger,
	}
	if o.MaxIdlePerDest <= 0 {
		// Fewer idle slots than workers makes a busy destination churn
		// connections: each put beyond the cap closes one that the next
		// transaction has to open again.
		o.MaxIdlePerDest = max(defaultMaxIdle, cfg.Workers)
	}
	d.pool = newPool(o.MaxIdlePerDest, cfg.IdleTimeout.Duration, d.closeConn)
	d.hosts = newHosts(cfg.DeadHostTime.Duration, max(cfg.DeadHostMaxTime.Duration, cfg.DeadHostTime.Duration))
	if o.Registry != nil {
		d.m = &metrics{
			attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "petrel_delivery_attempts_total",
				Help: "Delivery attempts per recipient by outcome.",
			}, []string{"outcome"}),
			seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "petrel_delivery_seconds",
				Help:    "Time to deliver one batch (DNS, connection, SMTP transaction).",
				Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
			}),
			open: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "petrel_delivery_connections_open",
				Help: "Outbound SMTP connections open now.",
			}),
			total: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "petrel_delivery_connections_total",
				Help: "Outbound SMTP connections opened.",
			}),
			downDeferrals: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "petrel_delivery_host_down_deferrals_total",
				Help: "Recipients deferred without connecting because every address of their destination was marked down (dead-host cache).",
			}),
		}
		hostsDown := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "petrel_delivery_hosts_down",
			Help: "MX addresses marked down by the dead-host cache after a connection failure.",
		}, func() float64 { return float64(d.hosts.down()) })
		for _, c := range []prometheus.Collector{d.m.attempts, d.m.seconds, d.m.open, d.m.total, d.m.downDeferrals, hostsDown} {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("delivery: register metrics: %w", err)
			}
		}
		if err := o.Resolver.Register(o.Registry); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Close closes all idle pooled connections.
func (d *Deliverer) Close() error {
	d.pool.closeAll()
	d.pool.reopen()
	return nil
}

// Run takes batches from src with Config.Workers workers until ctx ends
// or src is closed. Then it stops taking batches, lets in-flight
// transactions finish for up to Config.ShutdownTimeout (after which they
// are cut off and their recipients deferred), records every result with
// Complete, closes pooled connections and returns nil.
func (d *Deliverer) Run(ctx context.Context, src Source) error {
	txCtx, cancelTx := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTx()
	stopTimer := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(d.cfg.ShutdownTimeout.Duration, cancelTx)
		context.AfterFunc(txCtx, func() { t.Stop() })
	})
	defer stopTimer()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // idle connection sweeper
		defer wg.Done()
		tick := time.NewTicker(max(d.cfg.IdleTimeout.Duration/2, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				d.pool.sweep()
				d.hosts.prune()
			}
		}
	}()
	for range d.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.worker(ctx, txCtx, src)
		}()
	}
	wg.Wait()
	d.pool.closeAll()
	d.pool.reopen()
	return nil
}

func (d *Deliverer) worker(ctx, txCtx context.Context, src Source) {
	backoff := 10 * time.Millisecond
	for {
		b, err := src.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, queue.ErrClosed) {
				return
			}
			d.log.Error("queue next", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		var results []queue.Result
		body, err := src.Body(b.MsgID)
		if err != nil {
			results = make([]queue.Result, len(b.Rcpts))
			for i, r := range b.Rcpts {
				results[i] = queue.Result{Index: r.Index, Outcome: queue.Deferred,
					Reply: "local: message body unavailable: " + err.Error(), Reason: "local"}
			}
			d.log.Error("message body", "msg_id", b.MsgID, "err", err)
		} else {
			results = d.Deliver(txCtx, b, body)
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), completeTimeout)
		if err := src.Complete(cctx, b, results); err != nil {
			d.log.Error("queue complete", "msg_id", b.MsgID, "err", err)
		}
		cancel()
	}
}

// failure is what ended an attempt without a transaction.
type failure struct {
	code     int
	enhanced string
	reply    string
	mx       string
	// down: the address was skipped, marked down by the dead-host cache.
	down bool
}

// Deliver sends one batch in one SMTP transaction (trying MX hosts in
// order until one takes it) and returns one result per recipient, in
// b.Rcpts order.
func (d *Deliverer) Deliver(ctx context.Context, b *queue.Batch, body []byte) []queue.Result {
	start := time.Now()
	res := make([]queue.Result, len(b.Rcpts))
	idx := make([]int, 0, len(b.Rcpts))
	addrs := make([]string, 0, len(b.Rcpts))
	for i, rc := range b.Rcpts {
		res[i].Index = rc.Index
		if d.o.Suppressor != nil {
			if reason, ok := d.o.Suppressor.Suppressed(b.Envelope.Stream, rc.Addr); ok {
				res[i].Outcome = queue.Suppressed
				res[i].Reason = "suppressed:" + reason
				res[i].Reply = "recipient suppressed: " + reason
				continue
			}
		}
		if badAddr(rc.Addr) || !strings.Contains(rc.Addr, "@") {
			res[i].Outcome = queue.Bounced
			res[i].Enhanced = "5.1.3"
			res[i].Reply = "local: bad recipient address syntax"
			res[i].Reason = "badaddress"
			continue
		}
		idx = append(idx, i)
		addrs = append(addrs, rc.Addr)
	}
	if len(idx) > 0 {
		if badAddr(b.Envelope.From) {
			d.fill(res, idx, queue.Bounced, failure{enhanced: "5.1.7", reply: "local: bad sender address syntax"}, "badaddress")
		} else {
			d.send(ctx, b, body, idx, addrs, res)
		}
	}
	dur := time.Since(start)
	logged := d.log.Enabled(ctx, slog.LevelInfo) // skip boxing 11 attributes per recipient
	for i, r := range res {
		if logged {
			d.log.Info("delivery attempt", "msg_id", b.MsgID, "rcpt", b.Rcpts[i].Addr, "attempt", b.Rcpts[i].Attempts+1,
				"remote", r.RemoteMX, "code", r.Code, "enhanced", r.Enhanced, "reply", r.Reply,
				"outcome", outcomeName(r.Outcome), "reason", r.Reason, "duration", dur)
		}
		if d.m != nil {
			d.m.attempts.WithLabelValues(outcomeName(r.Outcome)).Inc()
		}
	}
	if d.m != nil {
		d.m.seconds.Observe(dur.Seconds())
	}
	return res
}

func outcomeName(o queue.Outcome) string {
	switch o {
	case queue.Delivered:
		return "delivered"
	case queue.Deferred:
		return "deferred"
	case queue.Bounced:
		return "bounced"
	case queue.Suppressed:
		return "suppressed"
	}
	return "unknown"
}

// outcomeOf maps a reply code to an outcome.
func outcomeOf(code int) queue.Outcome {
	switch code / 100 {
	case 2:
		return queue.Delivered
	case 5:
		return queue.Bounced
	}
	return queue.Deferred
}

// reason classifies a non-delivered reply.
func (d *Deliverer) reason(code int, enhanced, text string) string {
	if d.o.Classify != nil {
		r, _ := d.o.Classify(code, enhanced, text)
		return r
	}
	return ""
}

// fill sets the result of every recipient in idx.
func (d *Deliverer) fill(res []queue.Result, idx []int, o queue.Outcome, f failure, reason string) {
	if reason == "" && o != queue.Delivered {
		reason = d.reason(f.code, f.enhanced, f.reply)
	}
	for _, i := range idx {
		res[i] = queue.Result{Index: res[i].Index, Outcome: o, Code: f.code, Enhanced: f.enhanced,
			Reply: f.reply, RemoteMX: f.mx, Reason: reason}
	}
}

type target struct {
	host string
	port int
}

// send routes the batch and tries each target address in turn.
func (d *Deliverer) send(ctx context.Context, b *queue.Batch, body []byte, idx []int, addrs []string, res []queue.Result) {
	domain := strings.ToLower(b.Domain)
	if domain == "" {
		_, domain, _ = strings.Cut(strings.ToLower(addrs[0]), "@")
	}
	var targets []target
	if d.o.Transport != nil {
		if relay, ok := d.o.Transport(domain); ok {
			host, ps, err := net.SplitHostPort(relay)
			port, perr := strconv.Atoi(ps)
			if err != nil || perr != nil {
				host, port = strings.Trim(relay, "[]"), d.cfg.SMTPPort
			}
			targets = []target{{strings.ToLower(host), port}}
		}
	}
	if targets == nil {
		mxs, err := d.o.Resolver.LookupMX(ctx, domain)
		if err != nil {
			f := failure{reply: "dns: " + err.Error(), mx: domain}
			switch {
			case errors.Is(err, dns.ErrNullMX):
				f.enhanced = "5.1.10"
				d.fill(res, idx, queue.Bounced, f, "notaccept")
			case errors.Is(err, dns.ErrNoSuchDomain), errors.Is(err, dns.ErrNoMailHost):
				f.enhanced = "5.1.2"
				d.fill(res, idx, queue.Bounced, f, "hostunknown")
			default:
				f.enhanced = "4.4.3"
				d.fill(res, idx, queue.Deferred, f, "dns")
			}
			return
		}
		for _, mx := range mxs {
			targets = append(targets, target{mx.Host, d.cfg.SMTPPort})
		}
	}
	last := failure{reply: "no mail host could be tried", mx: targets[0].host}
	tried := 0
	for _, t := range targets {
		ips, err := d.o.Resolver.LookupIP(ctx, t.host)
		if err != nil {
			last = failure{enhanced: "4.4.3", reply: "dns: " + err.Error(), mx: t.host}
			continue
		}
		for _, ip := range ips {
			if tried >= maxAddrsPerDelivery || ctx.Err() != nil {
				break
			}
			tried++
			done, f := d.tryAddr(ctx, b, body, domain, t.host, netip.AddrPortFrom(ip, uint16(t.port)), idx, addrs, res)
			if done {
				return
			}
			last = f
		}
	}
	o := queue.Deferred
	if last.code/100 == 5 {
		o = queue.Bounced
	}
	reason := ""
	if last.down {
		reason = "hostdown"
		if d.m != nil {
			d.m.downDeferrals.Add(float64(len(idx)))
		}
	}
	d.fill(res, idx, o, last, reason)
}

// policyDone fills the batch from an mta.Shaper refusal or a context end;
// false when err is neither.
func (d *Deliverer) policyDone(err error, host string, res []queue.Result, idx []int) bool {
	var pe *mta.PolicyError
	if errors.As(err, &pe) {
		o := queue.Deferred
		if pe.Bounce {
			o = queue.Bounced
		}
		d.fill(res, idx, o, failure{reply: pe.Error(), mx: host}, "policy")
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		d.fill(res, idx, queue.Deferred, failure{reply: "local: " + err.Error(), mx: host}, "local")
		return true
	}
	return false
}

// tryAddr runs the transaction on one address, reusing a pooled
// connection when there is one. done reports that res is filled;
// otherwise f says why this address failed and the next is tried.
func (d *Deliverer) tryAddr(ctx context.Context, b *queue.Batch, body []byte, domain, host string,
	addr netip.AddrPort, idx []int, addrs []string, res []queue.Result) (done bool, f failure) {
	dest := mta.Dest{Domain: domain, MXHost: host, Stream: b.Envelope.Stream}
	key := poolKey{stream: b.Envelope.Stream, mxHost: host, addr: addr.String()}
	needTLS := d.needTLS(dest)
	c := d.pool.get(key, needTLS)
	pooled := c != nil
	if c == nil {
		// The dead-host cache, unless an operator asked for this attempt.
		var probe bool
		if !b.Forced {
			var down string
			var err error
			probe, down, err = d.hosts.acquire(ctx, addr)
			if err != nil && d.policyDone(err, host, res, idx) {
				return true, failure{}
			}
			if down != "" {
				return false, failure{enhanced: "4.4.1", reply: down, mx: host, down: true}
			}
		}
		var err error
		c, pooled, err = d.connect(ctx, dest, key, addr, needTLS)
		if probe {
			d.hosts.endProbe(addr)
		}
		if err != nil {
			if d.policyDone(err, host, res, idx) {
				return true, failure{}
			}
			return false, sessionFailure(err, host)
		}
	}
	if d.o.Shaper != nil {
		if err := d.o.Shaper.AcquireMessage(ctx, dest, c.permit.Egress.Name); err != nil {
			d.pool.put(c)
			if d.policyDone(err, host, res, idx) {
				return true, failure{}
			}
			d.fill(res, idx, queue.Deferred, failure{reply: "local: " + err.Error(), mx: host}, "local")
			return true, failure{}
		}
	}
	from := b.Envelope.From
	if from != "" && d.o.ReturnPath != nil {
		if rp := d.o.ReturnPath(b, idx); rp != "" {
			from = rp
		}
	}
	sent, bf := d.bodyFor(c, b.MsgID, body)
	if bf != nil {
		d.pool.put(c)
		return false, *bf
	}
	mail, err := c.mailParams(from, addrs, sent)
	if err != nil {
		d.pool.put(c)
		d.fill(res, idx, queue.Bounced, failure{enhanced: "5.6.7", reply: "local: " + err.Error(), mx: host}, "")
		return true, failure{}
	}
	tx := c.transaction(ctx, mail, addrs, sent)
	if pooled && (tx.err != nil && !tx.firstReplyRead || tx.mail.Code == 421) {
		// The pooled connection had died (or timed out) while idle:
		// nothing was accepted, so retry once on a fresh connection.
		d.closeConn(c)
		if c, err = d.dialNew(ctx, dest, key, addr); err != nil {
			if d.policyDone(err, host, res, idx) {
				return true, failure{}
			}
			return false, sessionFailure(err, host)
		}
		tx = c.transaction(ctx, mail, addrs, sent) // same address: same extensions
	}
	c.msgs++
	if !tx.anyPermanent() && ((tx.err != nil && !tx.dataSent) || tx.mail.Code == 421) {
		// The session broke (or the server is going away) before the
		// message was sent: nothing was delivered, so try the next host.
		f := failure{enhanced: "4.4.2", reply: "local: connection lost before DATA", mx: host}
		if tx.err != nil {
			f.reply = "local: " + tx.err.Error()
		}
		if tx.mail.Code == 421 {
			f = failure{code: 421, enhanced: tx.mail.Enhanced, reply: tx.mail.String(), mx: host}
		}
		if d.o.Shaper != nil {
			d.o.Shaper.Observe(dest, c.permit.Egress.Name, f.code, f.enhanced, f.reply)
		}
		d.closeConn(c)
		return false, f
	}
	d.record(c, dest, tx, idx, res, host)
	switch {
	case tx.err != nil || tx.mail.Code == 421 || tx.data.Code == 421:
		d.closeConn(c)
	case c.permit.MaxMessages > 0 && c.msgs >= c.permit.MaxMessages:
		d.closeConn(c)
	case tx.data.Class() != 2 && !c.reset():
		d.closeConn(c)
	default:
		d.pool.put(c)
	}
	return true, failure{}
}

// record turns a transaction into per-recipient results and reports
// every reply to the mta.Shaper.
func (d *Deliverer) record(c *smtpConn, dest mta.Dest, tx txResult, idx []int, res []queue.Result, host string) {
	egress := c.permit.Egress.Name
	observe := func(r Reply) {
		if d.o.Shaper != nil && r.Code != 0 {
			d.o.Shaper.Observe(dest, egress, r.Code, r.Enhanced, r.Text)
		}
	}
	observe(tx.mail)
	for _, r := range tx.rcpt {
		observe(r)
	}
	observe(tx.data)
	if tx.err != nil && d.o.Shaper != nil {
		d.o.Shaper.Observe(dest, egress, 0, "", tx.err.Error())
	}
	for j, i := range idx {
		var r Reply
		switch {
		case tx.mail.Code != 0 && tx.mail.Class() != 2:
			r = tx.mail
		case tx.rcpt[j].Code != 0 && tx.rcpt[j].Class() != 2:
			r = tx.rcpt[j]
		case tx.rcpt[j].Code != 0 && tx.data.Code != 0:
			r = tx.data
		}
		if r.Code == 0 {
			msg := "connection lost"
			if tx.err != nil {
				msg = tx.err.Error()
			}
			f := failure{enhanced: "4.4.2", reply: "local: " + msg, mx: host}
			d.fill(res, []int{i}, queue.Deferred, f, "")
			continue
		}
		o := outcomeOf(r.Code)
		reason := ""
		if o != queue.Delivered {
			reason = d.reason(r.Code, r.Enhanced, r.Text)
		}
		res[i] = queue.Result{Index: res[i].Index, Outcome: o, Code: r.Code, Enhanced: r.Enhanced,
			Reply: r.String(), RemoteMX: host, Reason: reason}
	}
	if src := c.sourceIP(); src != "" {
		for _, i := range idx {
			res[i].SourceIP = src
		}
	}
}

// connFailure reports whether a dial error means the address does not
// take connections: the TCP connect failed, or the connection was lost
// (or timed out) before a greeting was read.
func connFailure(err error) bool {
	var se *sessionError
	if !errors.As(err, &se) || se.reply != nil {
		return false
	}
	var oe *net.OpError
	switch se.stage {
	case "connect":
		return errors.As(se.err, &oe)
	case "greeting":
		return true
	}
	return false
}

func sessionFailure(err error, host string) failure {
	f := failure{reply: err.Error(), mx: host}
	var se *sessionError
	if errors.As(err, &se) && se.reply != nil {
		f.code, f.enhanced, f.reply = se.reply.Code, se.reply.Enhanced, se.stage+": "+se.reply.String()
	}
	return f
}

// needTLS reports whether a transaction to dest must run over TLS.
func (d *Deliverer) needTLS(dest mta.Dest) bool {
	if d.cfg.RequireTLS {
		return true
	}
	if tp, ok := d.o.Shaper.(mta.TLSPolicy); ok {
		return tp.TLSMode(dest) == mta.TLSRequired
	}
	return false
}

// connect returns a connection for key: a new one under a fresh permit,
// or one put back for key while this transaction waited (reused is then
// true). One transaction per key at a time waits for a permit; when the
// connection limit is full (mta.ConnTrier) it first closes idle pooled
// connections counted against that limit.
func (d *Deliverer) connect(ctx context.Context, dest mta.Dest, key poolKey, addr netip.AddrPort, needTLS bool) (c *smtpConn, reused bool, err error) {
	if d.o.Shaper == nil {
		c, err = d.dialPermit(ctx, dest, key, addr, mta.ConnPermit{TLS: mta.TLSOpportunistic})
		return c, false, err
	}
	w := &waiter{key: key, needTLS: needTLS, ch: make(chan *smtpConn, 1), promote: make(chan struct{}, 1)}
	if !d.pool.enter(w) {
		select {
		case c := <-w.ch:
			return c, true, nil
		case <-w.promote:
		case <-ctx.Done():
			if c := d.pool.leave(w); c != nil {
				return c, true, nil
			}
			return nil, false, ctx.Err()
		}
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var p mta.ConnPermit
	if d.pool.acquiring(w, cancel) {
		p, err = d.acquireConn(actx, dest)
	} else {
		err = context.Canceled
	}
	if h := d.pool.leave(w); h != nil {
		if err == nil && p.Release != nil {
			p.Release()
		}
		return h, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	c, err = d.dialPermit(ctx, dest, key, addr, p)
	return c, false, err
}

// acquireConn asks the mta.Shaper for a connection permit. While the limit is
// full and idle pooled connections hold slots of it, those are closed
// rather than waited for.
func (d *Deliverer) acquireConn(ctx context.Context, dest mta.Dest) (mta.ConnPermit, error) {
	if t, ok := d.o.Shaper.(mta.ConnTrier); ok {
		for {
			p, scope, ok, err := t.TryAcquireConn(ctx, dest)
			if err != nil || ok {
				return p, err
			}
			if !d.pool.reclaim(scope) {
				break
			}
		}
	}
	return d.o.Shaper.AcquireConn(ctx, dest)
}

// dialNew asks the mta.Shaper for a permit and opens a connection.
func (d *Deliverer) dialNew(ctx context.Context, dest mta.Dest, key poolKey, addr netip.AddrPort) (*smtpConn, error) {
	permit := mta.ConnPermit{TLS: mta.TLSOpportunistic}
	if d.o.Shaper != nil {
		p, err := d.acquireConn(ctx, dest)
		if err != nil {
			return nil, err
		}
		permit = p
	}
	return d.dialPermit(ctx, dest, key, addr, permit)
}

// dialPermit opens a connection under permit (released on failure); an
// opportunistic STARTTLS failure is retried once in clear text.
func (d *Deliverer) dialPermit(ctx context.Context, dest mta.Dest, key poolKey, addr netip.AddrPort, permit mta.ConnPermit) (*smtpConn, error) {
	if d.cfg.RequireTLS && permit.TLS == mta.TLSOpportunistic {
		permit.TLS = mta.TLSRequired
	}
	ehlo := permit.Egress.EHLO
	if ehlo == "" {
		ehlo = d.o.Hostname
	}
	spec := dialSpec{addr: addr, serverTLS: dest.MXHost, localIP: permit.Egress.LocalIP, ehlo: ehlo,
		tlsMode: permit.TLS, verify: d.cfg.TLSVerify, to: d.to}
	if _, err := netip.ParseAddr(dest.MXHost); err == nil {
		spec.serverTLS = ""
	}
	c, err := dial(ctx, spec)
	var se *sessionError
	if err != nil && errors.As(err, &se) && se.tlsFailed {
		d.log.Warn("STARTTLS failed, retrying in clear text", "mx", dest.MXHost, "addr", addr.String(), "err", err)
		spec.tlsMode = mta.TLSDisabled
		c, err = dial(ctx, spec)
	}
	switch {
	case err == nil:
		d.hosts.succeeded(addr)
	case ctx.Err() == nil && connFailure(err):
		d.hosts.failed(addr, err.Error())
		d.log.Info("MX address marked down", "mx", dest.MXHost, "addr", addr.String(), "err", err)
	}
	if err != nil {
		if d.o.Shaper != nil {
			code, enh := 0, ""
			if errors.As(err, &se) && se.reply != nil {
				code, enh = se.reply.Code, se.reply.Enhanced
			}
			d.o.Shaper.Observe(dest, permit.Egress.Name, code, enh, err.Error())
		}
		if permit.Release != nil {
			permit.Release()
		}
		return nil, err
	}
	c.key, c.mxHost, c.permit = key, dest.MXHost, permit
	if d.m != nil {
		d.m.open.Inc()
		d.m.total.Inc()
	}
	return c, nil
}

// closeConn closes c once and releases its permit (first, so a
// transaction waiting for the slot does not wait for the QUIT).
func (d *Deliverer) closeConn(c *smtpConn) {
	if c.closed {
		return
	}
	if c.permit.Release != nil {
		c.permit.Release()
	}
	c.quit()
	if d.m != nil {
		d.m.open.Dec()
	}
}
