// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer harness for init_client_parse(): every packet sbx-init sends is untrusted (root in the
 * sandbox controls sbx-init). The first input byte chooses how many fds "arrived" with the packet
 * (0..3), the rest is the packet. A parse must either fail cleanly or return a message whose
 * fields respect the protocol's bounds; nothing may crash or leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "sandbox/init-client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct init_client_msg msg;
        unsigned n_fds;

        if (size < 1 || size > SBX_INIT_MAX_REPLY + 1)
                return 0;
        n_fds = data[0] % 4;
        init_client_msg_init(&msg);
        if (init_client_parse(data + 1, size - 1, n_fds, &msg) == 0) {
                if (msg.n_procs > SBX_INIT_MAX_PROCS || (msg.n_procs > 0 && !msg.procs))
                        abort();
        }
        init_client_msg_release(&msg);
        return 0;
}
