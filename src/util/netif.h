/* Network interfaces of the calling thread's network namespace. */
#ifndef COVE_UTIL_NETIF_H
#define COVE_UTIL_NETIF_H

/* Bring the loopback interface up (a new network namespace has it down). Quiet: a namespace where it cannot
 * be brought up just has no loopback. */
void cove_loopback_up(void);

#endif
