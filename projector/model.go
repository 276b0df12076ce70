package projector

import (
	"math"
	"sort"
	"time"

	"github.com/tallyvote/tally"
)

// Model constants. They are calibrated with `tally eval` (see EVAL.md).
const (
	// z90, z99 are the normal quantiles of the 90% and 99% intervals.
	z90 = 1.6449
	z99 = 2.5758

	// Priors of the variance components, for when few precincts or
	// counties have reported. phi is the precinct-level residual variance
	// of a swing (in share) or a turnout ratio scaled by the precinct's
	// baseline votes (var = phi / baseline votes); tau2 is the variance
	// of a county's deviation from the state's swing or turnout. A prior
	// counts as n0 precincts (phi) or m0 counties (tau2).
	priorSwingPhi   = 1.0   // sd 0.032 for a 1,000-vote precinct (at a 50% share)
	priorTurnoutPhi = 10.0  // sd 0.1 for a 1,000-vote precinct
	priorSwingTau   = 0.025 // between-county sd of a share swing (at 50%)
	priorTurnoutTau = 0.06  // between-county sd of the turnout ratio
	priorN0         = 3.0
	priorM0         = 3.0

	// noHistInflation multiplies the precinct-level variance of precincts
	// without history before any of them has reported.
	noHistInflation = 4.0
	noHistN0        = 5.0

	// systematicSwing is the sd of an error common to the whole contest
	// that the reported precincts cannot reveal: reporting order that is
	// not random within counties (small or large precincts first) makes
	// the reported swing unrepresentative. It applies in proportion to
	// the vote outstanding.
	systematicSwing   = 0.005
	systematicTurnout = 0.02

	// robustZ is where an observation's residual is clipped (in its
	// standard errors); imbalanceScale weighs the imbalance term.
	robustZ        = 3.0
	imbalanceScale = 0.35
)

// Estimate is a projection with the model state the call rule needs.
type Estimate struct {
	tally.Projection
	// Pairs is the margin of the projected leader over every other
	// candidate (share difference) and its standard error, in the order
	// of Projection.Candidates (leader excluded).
	Pairs []PairMargin
	// CountiesReporting counts counties with at least one complete
	// precinct; CountiesTotal counts the contest's counties.
	CountiesReporting, CountiesTotal int
}

// PairMargin is the leader's estimated final margin over one candidate.
type PairMargin struct {
	Other  tally.CandidateID
	Margin float64
	SE     float64
}

// Model projects one contest from its baseline. Build it once with
// NewModel; Project reuses its buffers, so a Model is not safe for
// concurrent use.
type Model struct {
	contest tally.ContestID
	year    int
	cands   []tally.CandidateID
	votes   []int64 // one precinct's counts, by cands
	k       int
	pids    []tally.PrecinctID
	county  []int
	nc      int
	hist    []bool
	base    []float64 // baseline votes (an estimate without history)
	logB    []float64
	bshare  []float64 // [precinct*k + cand] baseline shares
	noHist  int

	// scratch
	obs      []int // precinct index of each observation
	obsX     []float64
	status   []uint8 // 0 unreported, 1 partial, 2 complete
	counted  []float64
	tot      []float64 // counted total per precinct
	rem      []float64 // predicted outstanding votes per precinct
	pshare   []float64 // [precinct*k + cand] predicted shares
	comps    []comp    // 0 turnout, 1+k swing of candidate k
	pair     comp
	aC, bC   []float64
	cntyDone []bool
	zc       []float64
	scratch  []float64
}

// comp is the fit of one quantity (a turnout ratio or a share swing):
// county estimates shrunk toward the state's, and variance components.
type comp struct {
	est   []float64 // per county estimate (state's for counties without data)
	vc    []float64 // per county variance of its deviation from the estimate
	vs    float64   // variance of the state-level estimate
	phi   float64   // precinct-level variance x baseline votes
	phiNH float64   // the same for precincts without history
	mean  float64   // state estimate
	tau2  float64   // between-county variance
	sumW  []float64
	sumX  []float64
	n     []int
}

func newComp(nc int) comp {
	return comp{est: make([]float64, nc), vc: make([]float64, nc), sumW: make([]float64, nc), sumX: make([]float64, nc), n: make([]int, nc)}
}

// NewModel returns the model of the contest cb is the baseline of. Precincts
// of the contest missing from cb have no history.
func NewModel(e *tally.Election, cb *ContestBaseline) (*Model, error) {
	c := e.Contest(cb.Contest)
	if c == nil {
		return nil, tally.Errorf(tally.EINVALID, "baseline: unknown contest %q", cb.Contest)
	}
	m := &Model{contest: c.ID, year: cb.Year, k: len(c.Candidates)}
	for _, cd := range c.Candidates {
		m.cands = append(m.cands, cd.ID)
	}
	m.votes = make([]int64, len(m.cands))
	m.pids = e.ContestPrecincts(c.ID)
	n := len(m.pids)
	counties := map[string]int{}
	m.county = make([]int, n)
	m.hist = make([]bool, n)
	m.base = make([]float64, n)
	m.bshare = make([]float64, n*m.k)
	for i, pid := range m.pids {
		p := e.Precinct(pid)
		ci, ok := counties[p.County]
		if !ok {
			ci = len(counties)
			counties[p.County] = ci
		}
		m.county[i] = ci
		pb, ok := cb.Precincts[pid]
		if !ok || pb.Total <= 0 {
			continue
		}
		m.hist[i] = pb.History
		m.base[i] = float64(pb.Total)
		for k, cd := range m.cands {
			m.bshare[i*m.k+k] = float64(pb.Votes[cd]) / float64(pb.Total)
		}
	}
	m.nc = len(counties)
	// Precincts with no baseline votes at all: the county's (or the
	// state's) mean precinct baseline and its shares.
	cw, cv := make([]float64, m.nc), make([]float64, m.nc*m.k)
	cn := make([]int, m.nc)
	var sw float64
	sv := make([]float64, m.k)
	var sn int
	for i := range m.pids {
		if m.base[i] > 0 {
			c := m.county[i]
			cw[c] += m.base[i]
			cn[c]++
			sw += m.base[i]
			sn++
			for k := range m.k {
				cv[c*m.k+k] += m.base[i] * m.bshare[i*m.k+k]
				sv[k] += m.base[i] * m.bshare[i*m.k+k]
			}
		}
	}
	for i := range m.pids {
		if !m.hist[i] {
			m.noHist++
		}
		if m.base[i] > 0 {
			continue
		}
		m.hist[i] = false
		c := m.county[i]
		switch {
		case cn[c] > 0:
			m.base[i] = cw[c] / float64(cn[c])
			for k := range m.k {
				m.bshare[i*m.k+k] = cv[c*m.k+k] / cw[c]
			}
		case sn > 0:
			m.base[i] = sw / float64(sn)
			for k := range m.k {
				m.bshare[i*m.k+k] = sv[k] / sw
			}
		default: // no baseline at all: a flat prior, replaced by data
			m.base[i] = 1
			for k := range m.k {
				m.bshare[i*m.k+k] = 1 / float64(m.k)
			}
		}
	}
	m.logB = make([]float64, n)
	for i := range m.pids {
		m.logB[i] = math.Log(m.base[i])
	}
	m.zc = make([]float64, m.nc)
	m.status = make([]uint8, n)
	m.counted = make([]float64, n*m.k)
	m.tot = make([]float64, n)
	m.rem = make([]float64, n)
	m.pshare = make([]float64, n*m.k)
	m.comps = make([]comp, 1+m.k)
	for i := range m.comps {
		m.comps[i] = newComp(m.nc)
	}
	m.pair = newComp(m.nc)
	m.aC, m.bC = make([]float64, m.nc), make([]float64, m.nc)
	m.cntyDone = make([]bool, m.nc)
	return m, nil
}

// Contest returns the contest the model projects.
func (m *Model) Contest() tally.ContestID { return m.contest }

// Project estimates the contest's final result from the reports in t.
// Complete precincts are final; a partial precinct ends with at least what
// it has counted; the others are predicted from their baseline and the
// swing and turnout change of the complete precincts with history.
func (m *Model) Project(t *tally.Totals, at time.Time) Estimate {
	K := m.k
	m.obs = m.obs[:0]
	var reporting int
	final := make([]float64, K)
	for i := range m.cntyDone {
		m.cntyDone[i] = false
	}
	for i, pid := range m.pids {
		m.status[i] = 0
		m.tot[i] = 0
		reported, complete := t.Counted(pid, m.contest, m.cands, m.votes)
		if !reported {
			continue
		}
		reporting++
		var tot float64
		for k, n := range m.votes {
			v := float64(n)
			m.counted[i*K+k] = v
			final[k] += v
			tot += v
		}
		m.tot[i] = tot
		m.status[i] = 1
		if complete {
			m.status[i] = 2
			m.cntyDone[m.county[i]] = true
			if m.hist[i] && tot > 0 {
				m.obs = append(m.obs, i)
			}
		}
	}
	countiesReporting := 0
	for _, d := range m.cntyDone {
		if d {
			countiesReporting++
		}
	}
	var counted float64
	for _, v := range final {
		counted += v
	}

	// Outstanding precincts' mean size and baseline shares, for the
	// imbalance terms.
	var outW, outLogB float64
	outShare := make([]float64, K)
	for i := range m.pids {
		if m.status[i] == 2 {
			continue
		}
		w := m.base[i]
		outW += w
		outLogB += w * m.logB[i]
		for k := range K {
			outShare[k] += w * m.bshare[i*K+k]
		}
	}
	if outW > 0 {
		outLogB /= outW
		for k := range K {
			outShare[k] /= outW
		}
	}
	size := covariate{z: func(p int) float64 { return m.logB[p] }, out: outLogB}

	// Fit turnout and swings on complete precincts with history.
	m.obsX = growF(m.obsX, len(m.obs))
	for i, p := range m.obs {
		m.obsX[i] = m.tot[p]/m.base[p] - 1
	}
	m.fit(&m.comps[0], m.obsX, priorTurnoutPhi, priorTurnoutTau*priorTurnoutTau, systematicTurnout*systematicTurnout, size)
	var reportedShare []float64 = make([]float64, K)
	for k := range K {
		if counted > 0 {
			reportedShare[k] = final[k] / counted
		}
	}
	for k := range K {
		for i, p := range m.obs {
			m.obsX[i] = m.counted[p*K+k]/m.tot[p] - m.bshare[p*K+k]
		}
		s := shareScale(reportedShare[k], K)
		part := covariate{z: func(p int) float64 { return m.bshare[p*K+k] }, out: outShare[k]}
		m.fit(&m.comps[1+k], m.obsX, priorSwingPhi*s, priorSwingTau*priorSwingTau*s, systematicSwing*systematicSwing*s, size, part)
	}

	// Predict the outstanding vote.
	var expected float64
	for i := range m.pids {
		m.rem[i] = 0
		if m.status[i] == 2 {
			continue
		}
		c := m.county[i]
		m.predictShares(i, c)
		pred := m.base[i] * (1 + m.comps[0].est[c])
		if pred < 0 {
			pred = 0
		}
		r := pred - m.tot[i]
		if r < 0 {
			r = 0
		}
		m.rem[i] = r
		for k := range K {
			final[k] += r * m.pshare[i*K+k]
		}
	}
	for _, v := range final {
		expected += v
	}
	// Precinct-level variance of precincts without history, from the
	// residuals of those that have reported.
	m.fitNoHist()

	est := Estimate{CountiesReporting: countiesReporting, CountiesTotal: m.nc}
	p := &est.Projection
	p.Contest = m.contest
	p.At = at
	p.BaselineYear = m.year
	p.PrecinctsReporting = reporting
	p.PrecinctsTotal = len(m.pids)
	p.PrecinctsWithoutHistory = m.noHist
	p.ExpectedVotes = int64(math.Round(expected))
	p.CountedVotes = int64(math.Round(counted))
	p.Outstanding = p.ExpectedVotes - p.CountedVotes
	if p.ExpectedVotes > 0 {
		p.CountedShare = float64(p.CountedVotes) / float64(p.ExpectedVotes)
	}
	if expected <= 0 {
		expected = 1
	}
	order := make([]int, K)
	for k := range order {
		order[k] = k
	}
	sort.SliceStable(order, func(a, b int) bool { return final[order[a]] > final[order[b]] })
	share := make([]float64, K)
	for k := range K {
		share[k] = final[k] / expected
	}
	p.Candidates = make([]tally.CandidateEstimate, 0, K)
	for _, k := range order {
		sd := m.sd(&m.comps[1+k], func(i int) float64 { return m.pshare[i*K+k] }, share[k], expected)
		p.Candidates = append(p.Candidates, tally.CandidateEstimate{
			ID: m.cands[k], Share: share[k], Votes: int64(math.Round(final[k])),
			I90: clip01(interval(share[k], sd, z90)), I99: clip01(interval(share[k], sd, z99)),
		})
	}
	if K == 1 {
		p.Margin = tally.MarginEstimate{Leader: m.cands[0], Estimate: 1, I90: tally.Interval{Lo: 1, Hi: 1}, I99: tally.Interval{Lo: 1, Hi: 1}}
		return est
	}
	lead := order[0]
	for _, k := range order[1:] {
		mg := share[lead] - share[k]
		// The pair's swing: the difference of the two candidates' swings.
		for i, pi := range m.obs {
			m.obsX[i] = (m.counted[pi*K+lead]-m.counted[pi*K+k])/m.tot[pi] - (m.bshare[pi*K+lead] - m.bshare[pi*K+k])
		}
		s := shareScale(reportedShare[lead], K) + shareScale(reportedShare[k], K)
		part := covariate{z: func(p int) float64 { return m.bshare[p*K+lead] - m.bshare[p*K+k] }, out: outShare[lead] - outShare[k]}
		m.fit(&m.pair, m.obsX, priorSwingPhi*s, priorSwingTau*priorSwingTau*s, systematicSwing*systematicSwing*s, size, part)
		m.pair.phiNH = noHistPhi(m, &m.pair, func(i int) float64 {
			return (m.counted[i*K+lead]-m.counted[i*K+k])/m.tot[i] - (m.pshare[i*K+lead] - m.pshare[i*K+k])
		})
		sd := m.sd(&m.pair, func(i int) float64 { return m.pshare[i*K+lead] - m.pshare[i*K+k] }, mg, expected)
		est.Pairs = append(est.Pairs, PairMargin{Other: m.cands[k], Margin: mg, SE: sd})
		if k == order[1] {
			p.Margin = tally.MarginEstimate{
				Leader: m.cands[lead], RunnerUp: m.cands[k], Estimate: mg,
				I90: clipMargin(interval(mg, sd, z90)), I99: clipMargin(interval(mg, sd, z99)),
			}
		}
	}
	return est
}

// predictShares sets the predicted shares of outstanding precinct i in
// county c: its baseline shares moved by the county's swing, clipped at 0
// and normalised.
func (m *Model) predictShares(i, c int) {
	K := m.k
	var sum float64
	for k := range K {
		s := m.bshare[i*K+k] + m.comps[1+k].est[c]
		if s < 0 {
			s = 0
		}
		m.pshare[i*K+k] = s
		sum += s
	}
	for k := range K {
		if sum > 0 {
			m.pshare[i*K+k] /= sum
		} else {
			m.pshare[i*K+k] = 1 / float64(K)
		}
	}
}

// shareScale scales a swing prior for a candidate with share p: the
// variance of a share is largest at 50%.
func shareScale(p float64, k int) float64 {
	if p <= 0 {
		p = 1 / float64(k)
	}
	s := 4 * p * (1 - p)
	if s < 0.01 {
		s = 0.01
	}
	return s
}

// fit estimates one quantity from the observations x (one per m.obs,
// weighted by baseline votes): the state estimate, county estimates shrunk
// toward it by their evidence (empirical Bayes), and the variance of each.
func (m *Model) fit(cp *comp, x []float64, phi0, tau0, sys float64, covs ...covariate) {
	m.fitOnce(cp, x, phi0, tau0, sys)
	// Robustness: an observation more than robustZ standard errors from
	// its county's estimate (a data error, a precinct that is unlike any
	// other) is pulled in to robustZ, and the fit is done again.
	if len(m.obs) > 4 {
		// Residuals against a leave-one-out county estimate, so one big
		// outlier cannot mask itself by dragging its county along; the
		// scale is robust too: the median squared standardised residual
		// over its expectation under normality (0.455).
		loo := func(i, p int) (float64, float64) {
			c, w := m.county[p], m.base[p]
			if cp.n[c] <= 1 {
				return cp.mean, cp.tau2
			}
			noise := cp.phi / (cp.sumW[c] - w)
			l := cp.tau2 / (cp.tau2 + noise)
			return cp.mean + l*((cp.sumX[c]-w*x[i])/(cp.sumW[c]-w)-cp.mean), l * noise
		}
		m.scratch = m.scratch[:0]
		for i, p := range m.obs {
			e, _ := loo(i, p)
			d := x[i] - e
			m.scratch = append(m.scratch, m.base[p]*d*d)
		}
		sort.Float64s(m.scratch)
		phiR := m.scratch[len(m.scratch)/2] / 0.455
		if phiR <= 0 || phiR > cp.phi {
			phiR = cp.phi
		}
		clipped := false
		for i, p := range m.obs {
			e, v := loo(i, p)
			lim := robustZ * math.Sqrt(phiR/m.base[p]+v)
			if d := x[i] - e; d > lim || d < -lim {
				x[i] = e + math.Copysign(lim, d)
				clipped = true
			}
		}
		if clipped {
			m.fitOnce(cp, x, phi0, tau0, sys)
		}
	}
	// Imbalance: when the precincts still out differ from those in on a
	// covariate (size, partisanship) that the quantity varies with within
	// counties, the county estimates may not carry over. Add the squared
	// extrapolation, slope^2 + its variance, times the squared gap.
	for _, cv := range covs {
		cp.vs += m.imbalance(cp, x, cv)
	}
}

// covariate is a per-precinct quantity and its mean over the precincts
// still out (weighted by baseline votes).
type covariate struct {
	z   func(p int) float64
	out float64
}

// imbalance returns (b^2 + se^2) * gap^2 for the within-county slope b of x
// on covariate cv and the gap between the outstanding and observed means.
func (m *Model) imbalance(cp *comp, x []float64, cv covariate) float64 {
	if len(m.obs) < 3 {
		return 0
	}
	zc := m.zc
	for c := range zc {
		zc[c] = 0
	}
	var zin, W float64
	for _, p := range m.obs {
		c, w := m.county[p], m.base[p]
		zc[c] += w * cv.z(p)
		zin += w * cv.z(p)
		W += w
	}
	zin /= W
	var sxz, szz float64
	for i, p := range m.obs {
		c, w := m.county[p], m.base[p]
		dz := cv.z(p) - zc[c]/cp.sumW[c]
		dx := x[i] - cp.sumX[c]/cp.sumW[c]
		sxz += w * dx * dz
		szz += w * dz * dz
	}
	gap := cv.out - zin
	if szz <= 0 {
		return 0
	}
	b := sxz / szz
	return imbalanceScale * (b*b + cp.phi/szz) * gap * gap
}

func (m *Model) fitOnce(cp *comp, x []float64, phi0, tau0, sys float64) {
	for c := range m.nc {
		cp.sumW[c], cp.sumX[c], cp.n[c] = 0, 0, 0
	}
	var W, X float64
	for i, p := range m.obs {
		c, w := m.county[p], m.base[p]
		cp.sumW[c] += w
		cp.sumX[c] += w * x[i]
		cp.n[c]++
		W += w
		X += w * x[i]
	}
	n := len(m.obs)
	mean := 0.0
	if W > 0 {
		mean = X / W
	}
	// Precinct-level variance (x baseline votes), around county means.
	var ss float64
	var groups int
	for c := range m.nc {
		if cp.n[c] > 0 {
			groups++
		}
	}
	for i, p := range m.obs {
		c := m.county[p]
		d := x[i] - cp.sumX[c]/cp.sumW[c]
		ss += m.base[p] * d * d
	}
	dof := float64(n - groups)
	if dof < 0 {
		dof = 0
	}
	cp.phi = (ss + priorN0*phi0) / (dof + priorN0)
	// Between-county variance, by moments, with a prior.
	var between float64
	if groups > 1 {
		var sb float64
		for c := range m.nc {
			if cp.n[c] > 0 {
				d := cp.sumX[c]/cp.sumW[c] - mean
				sb += d*d - cp.phi/cp.sumW[c]
			}
		}
		between = sb / float64(groups-1)
		if between < 0 {
			between = 0
		}
	}
	g := float64(groups - 1)
	if g < 0 {
		g = 0
	}
	tau2 := (g*between + priorM0*tau0) / (g + priorM0)
	// State estimate's variance: each reported county's deviation and
	// sampling noise weigh by its share of the reported baseline, plus
	// the systematic term.
	vs := sys
	if W > 0 {
		for c := range m.nc {
			if cp.n[c] > 0 {
				f := cp.sumW[c] / W
				vs += f * f * (tau2 + cp.phi/cp.sumW[c])
			}
		}
	} else {
		vs += tau2 + phi0/1000
	}
	cp.vs = vs
	cp.mean, cp.tau2 = mean, tau2
	for c := range m.nc {
		if cp.n[c] == 0 {
			cp.est[c] = mean
			cp.vc[c] = tau2
			continue
		}
		noise := cp.phi / cp.sumW[c]
		lambda := tau2 / (tau2 + noise)
		cp.est[c] = mean + lambda*(cp.sumX[c]/cp.sumW[c]-mean)
		cp.vc[c] = lambda * noise
	}
}

// fitNoHist sets the no-history variance of the turnout and candidate
// swings.
func (m *Model) fitNoHist() {
	K := m.k
	for i := range m.pids {
		if !m.hist[i] && m.status[i] == 2 {
			m.predictShares(i, m.county[i]) // what the model would have said
		}
	}
	m.comps[0].phiNH = noHistPhi(m, &m.comps[0], func(i int) float64 {
		return m.tot[i]/m.base[i] - 1 - m.comps[0].est[m.county[i]]
	})
	for k := range K {
		m.comps[1+k].phiNH = noHistPhi(m, &m.comps[1+k], func(i int) float64 {
			return m.counted[i*K+k]/m.tot[i] - m.pshare[i*K+k]
		})
	}
}

// noHistPhi blends the residual variance of reported precincts without
// history (resid gives one's residual against what the model predicts for
// it) with an inflated multiple of the precinct-level variance.
func noHistPhi(m *Model, cp *comp, resid func(i int) float64) float64 {
	var ss float64
	var n int
	for i := range m.pids {
		if m.hist[i] || m.status[i] != 2 || m.tot[i] <= 0 {
			continue
		}
		r := resid(i)
		ss += m.base[i] * r * r
		n++
	}
	prior := noHistInflation * cp.phi
	return (ss + noHistN0*prior) / (float64(n) + noHistN0)
}

// sd is the standard error of a final share (or share difference) X whose
// per-precinct predicted value is xhat(i): turnout errors move it by
// rem*(xhat-X)/V, swing errors by rem/V; precinct errors are independent,
// county errors shared within a county, state errors shared by all.
func (m *Model) sd(cp *comp, xhat func(i int) float64, X, V float64) float64 {
	t := &m.comps[0]
	for c := range m.nc {
		m.aC[c], m.bC[c] = 0, 0
	}
	var idio, A, B float64
	for i := range m.pids {
		r := m.rem[i]
		if r <= 0 {
			continue
		}
		a := r * (xhat(i) - X) / V
		b := r / V
		bv := m.base[i]
		if m.hist[i] {
			idio += (a*a*t.phi + b*b*cp.phi) / bv
		} else {
			idio += (a*a*t.phiNH + b*b*cp.phiNH) / bv
		}
		c := m.county[i]
		m.aC[c] += a
		m.bC[c] += b
		A += a
		B += b
	}
	v := idio + A*A*t.vs + B*B*cp.vs
	for c := range m.nc {
		v += m.aC[c]*m.aC[c]*t.vc[c] + m.bC[c]*m.bC[c]*cp.vc[c]
	}
	return math.Sqrt(v)
}

func interval(x, sd, z float64) tally.Interval {
	return tally.Interval{Lo: x - z*sd, Hi: x + z*sd}
}

func clip01(i tally.Interval) tally.Interval {
	i.Lo = math.Max(0, math.Min(1, i.Lo))
	i.Hi = math.Max(0, math.Min(1, i.Hi))
	return i
}

func clipMargin(i tally.Interval) tally.Interval {
	i.Lo = math.Max(-1, math.Min(1, i.Lo))
	i.Hi = math.Max(-1, math.Min(1, i.Hi))
	return i
}

func growF(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}
