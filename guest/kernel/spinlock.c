/* A ticket lock, as Linux's x86 spinlock was from 2.6.25 to 4.2: each CPU that wants the
 * lock takes the next ticket with one atomic fetch-and-add (a `lock xadd`, SDM vol. 2),
 * then waits until the ticket being served is its own; unlocking serves the next ticket.
 * Fair, unlike a bare test-and-set: a CPU that keeps asking cannot starve one already
 * waiting, so the CPUs of lab 23 take turns. */
#include "kernel.h"

void spin_lock(struct spinlock *lock)
{
    /* >>> 23: take a ticket (an atomic fetch-and-add on next: two CPUs must never get the
     * ... same one), then wait, with `pause`, until owner is that ticket */
    uint32_t ticket = __atomic_fetch_add(&lock->next, 1, __ATOMIC_RELAXED);
    while (__atomic_load_n(&lock->owner, __ATOMIC_ACQUIRE) != ticket)
        __asm__ volatile("pause");
    /* <<< */
}

void spin_unlock(struct spinlock *lock)
{
    /* >>> 23: serve the next ticket (only the holder writes owner; a release store) */
    __atomic_store_n(&lock->owner, lock->owner + 1, __ATOMIC_RELEASE);
    /* <<< */
}
