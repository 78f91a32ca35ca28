package budget

// MemoryCounters returns the number of budget periods m tracks.
func MemoryCounters(m *Memory) int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.counters)
		sh.mu.Unlock()
	}
	return n
}
