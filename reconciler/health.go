package reconciler

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tallyvote/tally"
)

// healthLoop checks region health every HealthInterval.
func (r *Reconciler) healthLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(r.ctx, r.cfg.HealthInterval+2*time.Second)
			r.checkHealth(ctx)
			cancel()
		}
	}
}

// mirrorState is what the hub knows of one region's mirror and link.
type mirrorState struct {
	ok       bool          // the stream info was read
	attached bool          // the mirror exists and is consumed
	active   time.Duration // since the mirror last heard from the region; <0: never
	lag      uint64        // mirror's own count of events behind (stale while cut off)
	lastSeq  uint64        // last region sequence in the mirror
	leaf     bool          // leaf link up (embedded hub) or, with an external hub, heard within OfflineAfter
	linkUp   time.Time     // when the leaf link was first seen up in its current connection; zero if unknown
}

// regionStatus derives a region's status from its mirror: offline when the
// link is down, or the mirror has not heard from the region within
// offlineAfter (or ever, or since the link last came up); lagging when
// connected but more than lagThreshold events behind, counting the mirror's
// own lag and what it holds that is not applied yet; live otherwise. It also
// returns how far behind the region is.
func regionStatus(ms mirrorState, applied uint64, now time.Time, offlineAfter time.Duration, lagThreshold uint64) (string, uint64) {
	behind := ms.lag
	if ms.lastSeq > applied {
		behind += ms.lastSeq - applied
	}
	heard := ms.active >= 0 && ms.active <= offlineAfter &&
		(ms.linkUp.IsZero() || !now.Add(-ms.active).Before(ms.linkUp))
	switch {
	case !ms.leaf || !heard:
		return tally.StatusOffline, behind
	case behind > lagThreshold:
		return tally.StatusLagging, behind
	}
	return tally.StatusLive, behind
}

// checkHealth reads every mirror's state and the leaf links, derives each
// region's status and records the changes.
//
// A mirror's Active is the time since its consumer on the region last sent
// anything, idle heartbeats included (one per second when idle), and -1 until
// it has heard from the region at all. Its Lag is only updated by arriving
// messages, so while a region is cut off it keeps its last value (0 when it
// was caught up): Lag alone cannot see an outage, Active and the link can.
func (r *Reconciler) checkHealth(ctx context.Context) {
	now := time.Now().UTC()
	leafs, leafKnown := r.leafLinks()
	states := make([]mirrorState, len(r.e.Regions))
	for i, reg := range r.e.Regions {
		if err := r.attach(ctx, reg.ID); err != nil {
			r.log.Warn().Err(err).Str("region", string(reg.ID)).Msg("mirror not attached")
		}
		if !r.attached[reg.ID] {
			// Never reached yet: offline, with no mirror to read.
			states[i] = mirrorState{ok: true, active: -1, leaf: leafKnown && leafs[reg.ID]}
			continue
		}
		name := tally.MirrorStream(reg.ID)
		s, err := r.js.Stream(ctx, name)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn().Err(err).Str("region", string(reg.ID)).Str("stream", name).Msg("mirror info unavailable")
			}
			continue
		}
		info := s.CachedInfo()
		st := mirrorState{ok: true, attached: true, active: -1, lastSeq: info.State.LastSeq}
		if info.Mirror != nil {
			st.active, st.lag = info.Mirror.Active, info.Mirror.Lag
		}
		if leafKnown {
			st.leaf = leafs[reg.ID]
		} else {
			st.leaf = st.active >= 0 && st.active <= r.cfg.OfflineAfter
		}
		states[i] = st
	}

	for i, reg := range r.e.Regions {
		if states[i].attached {
			r.checkStall(ctx, reg.ID, states[i].lastSeq, now)
		}
	}

	// A link seen coming up starts a new contact: until the mirror has heard
	// from the region after it, the region stays offline. Without this, a
	// short outage would read live on reconnect while the mirror's consumer
	// on the region is gone and not yet re-created.
	if leafKnown {
		for i, reg := range r.e.Regions {
			switch {
			case !leafs[reg.ID]:
				delete(r.linkUp, reg.ID)
			case r.linkUp[reg.ID].IsZero():
				r.linkUp[reg.ID] = now
				if r.durable[reg.ID] {
					r.checkMirrorConsumer(ctx, reg.ID)
				}
			}
			states[i].linkUp = r.linkUp[reg.ID]
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for i, reg := range r.e.Regions {
		ms := states[i]
		if !ms.ok {
			continue // keep what we knew
		}
		r.mirrored[i] = ms.attached
		old := r.statuses[i]
		st := old
		st.Lag, st.LastSeq, st.Leaf = ms.lag, ms.lastSeq, ms.leaf
		st.Applied = r.totals.LastSeq(reg.ID)
		st.LastUpdate = r.lastUpdate[reg.ID]
		if ms.active >= 0 {
			st.LastActive = now.Add(-ms.active).Truncate(time.Millisecond)
		}
		var behind uint64
		st.Status, behind = regionStatus(ms, st.Applied, now, r.cfg.OfflineAfter, r.cfg.LagThreshold)
		if st.Status != tally.StatusOffline {
			r.heard[i] = true
		}
		if st.Status != old.Status {
			st.Since = now
			for _, c := range r.regionContests[reg.ID] {
				r.dirty[c] = true
			}
			ev := r.log.Warn()
			if st.Status == tally.StatusLive {
				ev = r.log.Info()
			}
			ev.Str("region", string(reg.ID)).Str("status", st.Status).Str("was", old.Status).
				Bool("leaf", st.Leaf).Dur("active", ms.active).Uint64("lag", behind).
				Uint64("seq", st.Applied).Msg("region status changed")
		}
		if st != old {
			r.statuses[i] = st
			r.regionsDirty = true
		}
		if st.Status != old.Status {
			r.statusEventLocked(i, old.Status, behind)
		}
		r.reconcileLocked(i)
	}
}

// leafLinks reports which regions have a leaf-node link to the embedded hub.
// known is false with an external hub, whose links the reconciler cannot
// see. A link is matched to its region by the interest the region's server
// propagates for its own JetStream domain's API ($JS.<region>.API.INFO and
// the like), which every JetStream-enabled region node has whatever its
// server name, or else by its server name, "region-<id>".
func (r *Reconciler) leafLinks() (up map[tally.RegionID]bool, known bool) {
	if r.ns == nil {
		return nil, false
	}
	lz, err := r.ns.Leafz(&server.LeafzOptions{Subscriptions: true})
	if err != nil {
		r.log.Warn().Err(err).Msg("leaf links unavailable")
		return nil, false
	}
	up = map[tally.RegionID]bool{}
	for _, l := range lz.Leafs {
		if reg, ok := strings.CutPrefix(l.Name, "region-"); ok && r.e.Region(tally.RegionID(reg)) != nil {
			up[tally.RegionID(reg)] = true
		}
		for _, sub := range l.Subs {
			rest, ok := strings.CutPrefix(sub, "$JS.")
			if !ok {
				continue
			}
			if dom, ok := strings.CutSuffix(rest, ".API.INFO"); ok && r.e.Region(tally.RegionID(dom)) != nil {
				up[tally.RegionID(dom)] = true
			}
		}
	}
	return up, true
}
