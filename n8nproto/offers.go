package n8nproto

import (
	mrand "math/rand/v2"
	"time"
)

// offerLoop keeps the runner's offers open at n8n's broker for as long as the session lives.
func (s *session) offerLoop() {
	t := time.NewTicker(s.r.cfg.OfferInterval)
	defer t.Stop()
	for {
		s.sendOffers()
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// kickOffers makes the current session offer a freed slot at once (the official runner does the same
// when a task finishes); without it back-to-back tasks wait for the next offer tick.
func (r *Runner) kickOffers() {
	r.mu.Lock()
	s := r.sess
	r.mu.Unlock()
	if s == nil {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// sendOffers tops the open offers up to MaxConcurrency - running for every task type. Like the official
// runner it never renews an offer in place (new ids replace old ones), but unlike it (which waits until
// its own copy expired, leaving the broker a ~100 ms gap per slot) it sends the replacement a little
// before the broker drops the old offer: an idle runner is never without an offer at the broker. The
// broker may briefly hold both; an accept beyond capacity is rejected.
func (s *session) sendOffers() {
	running := s.r.Running()
	now := time.Now()
	var out []TaskOffer
	s.mu.Lock()
	for id, o := range s.offers {
		if now.After(o.validUntil) {
			delete(s.offers, id)
		}
	}
	if s.registered && !s.brokerDraining && !s.r.drained.Load() && s.tasks != nil {
		fresh := map[string]int{}
		for _, o := range s.offers {
			if now.Before(o.renewAt) {
				fresh[o.taskType]++
			}
		}
		for _, typ := range s.r.cfg.TaskTypes {
			for n := s.r.cfg.MaxConcurrency - running - fresh[typ]; n > 0; n-- {
				valid := s.r.cfg.OfferValidFor + time.Duration(mrand.Int64N(int64(500*time.Millisecond)))
				margin := max(valid/10, 2*s.r.cfg.OfferInterval)
				margin = min(margin, valid/2)
				id := randomID()
				s.offers[id] = offerSlot{taskType: typ, renewAt: now.Add(valid - margin), validUntil: now.Add(valid + 100*time.Millisecond)}
				out = append(out, TaskOffer{OfferID: id, TaskType: typ, ValidFor: valid.Milliseconds()})
			}
		}
	}
	s.mu.Unlock()
	for _, o := range out {
		s.send(o)
	}
}
