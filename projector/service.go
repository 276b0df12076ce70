package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

// Config configures a Service.
type Config struct {
	// Election is the election to project; it must have been validated.
	Election *tally.Election
	// Baselines are the contests' baselines (LoadBaseline). Contests
	// without one get no projection.
	Baselines Baseline
	// Interval is the least time between two recomputations of a
	// contest's projection. 0 means 1s.
	Interval time.Duration
	// AllowManual lets admins call and retract races on
	// tally.AdminCallSubject; otherwise such requests are refused with
	// code forbidden.
	AllowManual bool
	// Rule is the call rule; the zero value means DefaultCallRule.
	Rule CallRule
	// Logger receives the service's logs.
	Logger zerolog.Logger
}

// Service is the projector on the hub: it follows every region's mirror
// into its own totals, projects the contests that changed (at most once per
// Interval), puts each projection at tally.ProjectionKey in the national
// bucket, and publishes every call and retraction to tally.CallsStream and
// at tally.CallKey.
type Service struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	log zerolog.Logger

	mu      sync.Mutex // guards the fields below
	totals  *tally.Totals
	dirty   map[tally.ContestID]bool
	models  map[tally.ContestID]*Model
	callers map[tally.ContestID]*Caller
	pending []*tally.Call // call events not yet published
	kv      jetstream.KeyValue
	restore bool // calls restored from the bucket

	recomputeDur prometheus.Histogram

	consumers map[tally.RegionID]jetstream.ConsumeContext // owned by the run loop
	sub       *nats.Subscription
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New returns a service projecting cfg.Election over nc, a connection to
// the hub, which the caller closes after Close. Errors have code EINVALID.
func New(cfg Config, nc *nats.Conn) (*Service, error) {
	if cfg.Election == nil {
		return nil, tally.Errorf(tally.EINVALID, "projector: election required")
	}
	if nc == nil {
		return nil, tally.Errorf(tally.EINVALID, "projector: nats connection required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Rule == (CallRule{}) {
		cfg.Rule = DefaultCallRule
	}
	s := &Service{
		cfg: cfg, nc: nc, log: cfg.Logger,
		totals:    tally.NewTotals(cfg.Election),
		dirty:     map[tally.ContestID]bool{},
		models:    map[tally.ContestID]*Model{},
		callers:   map[tally.ContestID]*Caller{},
		consumers: map[tally.RegionID]jetstream.ConsumeContext{},
	}
	s.recomputeDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tally_projector_recompute_duration_seconds",
		Help:    "Time to recompute one contest's projection and apply the call rule.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	for _, c := range cfg.Election.Contests {
		cb := cfg.Baselines.Contests[c.ID]
		if cb == nil {
			s.log.Info().Str("contest", string(c.ID)).Msg("contest has no baseline; not projected")
			continue
		}
		m, err := NewModel(cfg.Election, cb)
		if err != nil {
			return nil, err
		}
		s.models[c.ID] = m
		s.callers[c.ID] = NewCaller(c.ID, cfg.Rule)
	}
	return s, nil
}

// Open creates the calls stream, answers admin calls and starts following
// the mirrors. Mirrors and the national bucket that do not exist yet are
// waited for (retried every second). ctx bounds setup only.
func (s *Service) Open(ctx context.Context) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     tally.CallsStream,
		Subjects: []string{"tally.calls.>"},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", tally.CallsStream, err)
	}
	sub, err := s.nc.Subscribe(tally.AdminCallSubject, s.handleAdmin)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", tally.AdminCallSubject, err)
	}
	s.sub = sub
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.run()
	s.log.Info().Int("contests", len(s.models)).Bool("manual_calls", s.cfg.AllowManual).
		Dur("interval", s.cfg.Interval).Msg("projector opened")
	return nil
}

// Close stops following the mirrors and answering admin calls, publishes
// what is pending once more, and waits for its goroutines. It is safe to
// call more than once.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.sub != nil {
			if uerr := s.sub.Unsubscribe(); uerr != nil && !errors.Is(uerr, nats.ErrConnectionClosed) {
				err = fmt.Errorf("unsubscribe %s: %w", tally.AdminCallSubject, uerr)
			}
		}
		if s.cancel != nil {
			s.cancel()
			s.wg.Wait()
		}
		s.log.Info().Msg("projector closed")
	})
	return err
}

// run attaches mirrors and binds the bucket (retrying every second) and
// recomputes dirty contests every Interval.
func (s *Service) run() {
	defer s.wg.Done()
	defer func() {
		for reg, cc := range s.consumers {
			cc.Stop()
			<-cc.Closed()
			delete(s.consumers, reg)
		}
	}()
	s.attach()
	s.recompute()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.flushCalls(ctx)
			cancel()
			return
		case <-retry.C:
			s.attach()
		case <-tick.C:
			s.recompute()
		}
	}
}

// attach binds the bucket and starts a consumer on every region mirror
// that has none yet.
func (s *Service) attach() {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	s.mu.Lock()
	bound := s.kv != nil
	s.mu.Unlock()
	if !bound {
		kv, err := s.js.KeyValue(ctx, tally.NationalBucket)
		switch {
		case err == nil:
			s.restoreCalls(ctx, kv)
			s.mu.Lock()
			s.kv = kv
			s.mu.Unlock()
			s.log.Info().Str("bucket", tally.NationalBucket).Msg("bucket bound")
		case errors.Is(err, jetstream.ErrBucketNotFound):
			s.log.Debug().Str("bucket", tally.NationalBucket).Msg("bucket not there yet")
		default:
			s.log.Warn().Err(err).Str("bucket", tally.NationalBucket).Msg("bind bucket failed")
		}
	}
	for _, r := range s.cfg.Election.Regions {
		if s.consumers[r.ID] != nil {
			continue
		}
		if err := s.startConsumer(ctx, r.ID); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				s.log.Debug().Str("region", string(r.ID)).Msg("mirror not there yet")
			} else {
				s.log.Warn().Err(err).Str("region", string(r.ID)).Msg("attach mirror failed")
			}
		}
	}
}

// restoreCalls loads the contests' current calls from the bucket, so a
// restarted projector neither repeats nor forgets them.
func (s *Service) restoreCalls(ctx context.Context, kv jetstream.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.restore {
		return
	}
	s.restore = true
	for c, cl := range s.callers {
		e, err := kv.Get(ctx, tally.CallKey(c))
		if err != nil {
			continue // none yet (or unreadable: the model decides afresh)
		}
		var call tally.Call
		if json.Unmarshal(e.Value(), &call) != nil || call.Contest != c {
			continue
		}
		cl.current = &call
		cl.manual = call.By != "model"
	}
}

// startConsumer follows region r's mirror from the sequence after the last
// one applied.
func (s *Service) startConsumer(ctx context.Context, r tally.RegionID) error {
	s.mu.Lock()
	from := s.totals.LastSeq(r) + 1
	s.mu.Unlock()
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from
	}
	name := tally.MirrorStream(r)
	cons, err := s.js.OrderedConsumer(ctx, name, cfg)
	if err != nil {
		return fmt.Errorf("consumer of %s: %w", name, err)
	}
	log := s.log.With().Str("region", string(r)).Str("stream", name).Logger()
	cc, err := cons.Consume(func(msg jetstream.Msg) { s.handle(r, msg) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Debug().Err(err).Msg("consume error")
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", name, err)
	}
	s.consumers[r] = cc
	log.Info().Uint64("seq", from).Msg("mirror attached")
	return nil
}

// handle applies one mirrored message to the totals. What is not a valid
// report of this region only moves the region's sequence on.
func (s *Service) handle(r tally.RegionID, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		return // an ordered consumer always delivers metadata
	}
	seq := md.Sequence.Stream
	rep, err := s.decode(r, msg.Subject(), msg.Data())
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.totals.Advance(r, seq)
		s.log.Debug().Err(err).Str("region", string(r)).Uint64("seq", seq).Str("subject", msg.Subject()).Msg("message skipped")
		return
	}
	if s.totals.Apply(seq, rep) && s.models[rep.Contest] != nil {
		s.dirty[rep.Contest] = true
	}
}

func (s *Service) decode(r tally.RegionID, subject string, data []byte) (*tally.Report, error) {
	sr, p, c, ok := tally.ParseResultsSubject(subject)
	if !ok {
		return nil, tally.Errorf(tally.EINVALID, "not a results subject")
	}
	if sr != r {
		return nil, tally.Errorf(tally.EINVALID, "subject names region %q in the mirror of %q", sr, r)
	}
	rep, err := tally.DecodeReport(data)
	if err != nil {
		return nil, err
	}
	if err := rep.Validate(s.cfg.Election); err != nil {
		return nil, err
	}
	if rep.Region != r || rep.Precinct != p || rep.Contest != c {
		return nil, tally.Errorf(tally.EINVALID, "report stored under another precinct's subject")
	}
	return rep, nil
}

// Describe and Collect make the service a prometheus.Collector of its
// metrics (tally_projector_recompute_duration_seconds): register it on the
// registry that should serve them, once.
func (s *Service) Describe(ch chan<- *prometheus.Desc) { s.recomputeDur.Describe(ch) }

// Collect is half of prometheus.Collector; see Describe.
func (s *Service) Collect(ch chan<- prometheus.Metric) { s.recomputeDur.Collect(ch) }

// recompute projects the dirty contests, applies the call rule, and
// publishes projections and call events.
func (s *Service) recompute() {
	s.mu.Lock()
	kv := s.kv
	if kv == nil {
		s.mu.Unlock()
		return // keep them dirty until the bucket exists
	}
	ids := make([]tally.ContestID, 0, len(s.dirty))
	for c := range s.dirty {
		ids = append(ids, c)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	now := time.Now().UTC()
	type out struct {
		c tally.ContestID
		b []byte
	}
	var outs []out
	for _, c := range ids {
		delete(s.dirty, c)
		start := time.Now()
		est := s.models[c].Project(s.totals, now)
		if ev := s.callers[c].Update(&est); ev != nil {
			s.pending = append(s.pending, ev)
		}
		s.recomputeDur.Observe(time.Since(start).Seconds())
		b, err := json.Marshal(est.Projection)
		if err != nil {
			s.log.Error().Err(err).Str("contest", string(c)).Msg("encode projection failed")
			continue
		}
		outs = append(outs, out{c, b})
		s.log.Debug().Str("contest", string(c)).Float64("duration_ms", float64(time.Since(start).Microseconds())/1000).Msg("projection computed")
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	for _, o := range outs {
		if _, err := kv.Put(ctx, tally.ProjectionKey(o.c), o.b); err != nil {
			s.log.Warn().Err(err).Str("contest", string(o.c)).Msg("put projection failed")
			s.mu.Lock()
			s.dirty[o.c] = true // try again next interval
			s.mu.Unlock()
		}
	}
	s.flushCalls(ctx)
}

// flushCalls publishes pending call events in order: into the calls stream
// (deduplicated by event id), then at the contest's call key. What fails
// stays pending.
func (s *Service) flushCalls(ctx context.Context) {
	s.mu.Lock()
	kv := s.kv
	evs := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(evs) == 0 {
		return
	}
	for i, ev := range evs {
		if kv == nil {
			s.requeue(evs[i:])
			return
		}
		if err := s.publishCall(ctx, kv, ev); err != nil {
			s.log.Warn().Err(err).Str("contest", string(ev.Contest)).Msg("publish call failed")
			s.requeue(evs[i:])
			return
		}
		s.log.Info().Str("contest", string(ev.Contest)).Str("status", ev.Status).Str("winner", string(ev.Winner)).
			Str("by", ev.By).Msg("call published")
	}
}

func (s *Service) requeue(evs []*tally.Call) {
	s.mu.Lock()
	s.pending = append(append([]*tally.Call(nil), evs...), s.pending...)
	s.mu.Unlock()
}

func (s *Service) publishCall(ctx context.Context, kv jetstream.KeyValue, ev *tally.Call) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	id := fmt.Sprintf("%s-%s-%d", ev.Contest, ev.Status, ev.At.UnixNano())
	if _, err := s.js.Publish(ctx, tally.CallSubject(ev.Contest), b, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("publish %s: %w", tally.CallSubject(ev.Contest), err)
	}
	if _, err := kv.Put(ctx, tally.CallKey(ev.Contest), b); err != nil {
		return fmt.Errorf("put %s: %w", tally.CallKey(ev.Contest), err)
	}
	return nil
}

// handleAdmin answers a manual call or retraction with the resulting Call,
// or {"error":{"code","message"}}.
func (s *Service) handleAdmin(msg *nats.Msg) {
	call, err := s.manual(msg.Data)
	var b []byte
	if err != nil {
		b, _ = json.Marshal(tally.ErrorReply(err))
	} else {
		b, _ = json.Marshal(call)
	}
	if rerr := msg.Respond(b); rerr != nil {
		s.log.Warn().Err(rerr).Str("subject", msg.Subject).Msg("admin reply failed")
	}
}

func (s *Service) manual(data []byte) (*tally.Call, error) {
	if !s.cfg.AllowManual {
		return nil, tally.Errorf(tally.EFORBIDDEN, "manual calls are disabled on this projector")
	}
	var a tally.AdminCall
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, tally.Errorf(tally.EINVALID, "admin call: malformed JSON: %v", err)
	}
	if err := a.Validate(s.cfg.Election); err != nil {
		return nil, err
	}
	s.mu.Lock()
	cl := s.callers[a.Contest]
	if cl == nil {
		s.mu.Unlock()
		return nil, tally.Errorf(tally.EINVALID, "contest: %q has no baseline, so no projector call", a.Contest)
	}
	call := cl.Manual(&a, time.Now().UTC())
	s.pending = append(s.pending, call)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.flushCalls(ctx)
	return call, nil
}
