package throttle

import "sync"

// waiter states, changed only under the group's lock.
const (
	waitQueued = iota + 1
	waitGranted
	waitCancelled
)

// waiter is one throttled request sitting in a member's queue. Blocked
// Waits are woken through ch (buffered, exactly one send per grant);
// in-package simulations use cb instead.
type waiter struct {
	bytes      uint64
	state      int
	prev, next *waiter
	ch         chan struct{}
	cb         func()
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

// waitQueue is an intrusive FIFO of waiters.
type waitQueue struct {
	head, tail *waiter
}

func (q *waitQueue) push(w *waiter) {
	w.next = nil
	w.prev = q.tail
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
}

func (q *waitQueue) pop() *waiter {
	w := q.head
	q.remove(w)
	return w
}

func (q *waitQueue) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next = nil, nil
}
