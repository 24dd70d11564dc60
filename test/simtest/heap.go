package simtest

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// LiveHeap is the heap in use right after a collection: what is reachable,
// not garbage waiting for the next cycle, so that memory bounds in tests
// do not depend on when the collector last ran.
func LiveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// HeapWatch samples LiveHeap periodically while a test floods a plugin,
// keeping the largest sample.
type HeapWatch struct {
	peak atomic.Uint64
	stop chan struct{}
	done sync.WaitGroup
}

// WatchHeap samples LiveHeap now and every interval until End.
func WatchHeap(interval time.Duration) *HeapWatch {
	w := &HeapWatch{stop: make(chan struct{})}
	w.done.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if h := LiveHeap(); h > w.peak.Load() {
				w.peak.Store(h)
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	})
	return w
}

// End stops sampling and returns the largest live heap seen.
func (w *HeapWatch) End() uint64 {
	close(w.stop)
	w.done.Wait()
	return w.peak.Load()
}
