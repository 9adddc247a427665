// SPDX-License-Identifier: Apache-2.0
/* The capability bounding set of sandboxes; see caps.h. */
#include "caps.h"

#include <errno.h>
#include <linux/capability.h>
#include <sys/prctl.h>

static const int kept[] = {
        CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_FSETID,     CAP_FOWNER,           CAP_MKNOD,
        CAP_NET_RAW, CAP_SETGID,      CAP_SETUID,     CAP_SETFCAP,          CAP_SETPCAP,
        CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
};

int caps_is_kept(int cap)
{
        for (unsigned i = 0; i < sizeof kept / sizeof kept[0]; i++)
                if (kept[i] == cap)
                        return 1;
        return 0;
}

int caps_drop_bounding_child(void)
{
        for (int cap = 0; cap <= 63; cap++) {
                if (caps_is_kept(cap))
                        continue;
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
                        if (errno == EINVAL) /* beyond the kernel's last cap */
                                break;
                        return -errno;
                }
        }
        return 0;
}
