package registry

// forceVersion makes the registry behave as on an older (or newer) server, to test fallbacks.
func (r *Registry) forceVersion(v [3]int) {
	r.mu.Lock()
	r.features = featuresFor(v)
	r.mu.Unlock()
}

// forceCluster makes the registry group streams by slot as on Cluster.
func (r *Registry) forceCluster() { r.cluster = true }
