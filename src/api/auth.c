// SPDX-License-Identifier: Apache-2.0
/*
 * Bearer check and key generation; see auth.h. Both sides are hashed with SHA-256 before the
 * CRYPTO_memcmp so neither the key's bytes nor its length leak through timing.
 */
#include "auth.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

int auth_check_bearer(const char *authorization, const char *api_key, struct sbx_err *err)
{
        unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
        const char *token;
        size_t len;

        if (!api_key || !api_key[0] || !authorization)
                goto refuse;
        if (strncasecmp(authorization, "Bearer", 6) != 0 || (authorization[6] != ' ' && authorization[6] != '\t'))
                goto refuse;
        token = authorization + 6;
        token += strspn(token, " \t");
        len = strcspn(token, " \t");
        /* nothing but optional whitespace may follow the token */
        if (len == 0 || token[len + strspn(token + len, " \t")] != '\0')
                goto refuse;

        (void)SHA256((const unsigned char *)api_key, strlen(api_key), want);
        (void)SHA256((const unsigned char *)token, len, got);
        if (CRYPTO_memcmp(want, got, sizeof want) == 0)
                return 0;
refuse:
        return sbx_err_setr(err, -SBX_E_UNAUTHORIZED, "unauthorized", SBX_AUTH_MESSAGE);
}

int api_key_generate(char *buf, size_t size)
{
        static const char hex[] = "0123456789abcdef";
        unsigned char raw[SBX_API_KEY_HEX / 2];
        size_t n = sizeof SBX_API_KEY_PREFIX - 1;
        int r;

        if (!buf || size <= SBX_API_KEY_LEN)
                return -ENOBUFS;
        r = sbx_random_bytes(raw, sizeof raw);
        if (r < 0)
                return r;
        memcpy(buf, SBX_API_KEY_PREFIX, n);
        for (size_t i = 0; i < sizeof raw; i++) {
                buf[n++] = hex[raw[i] >> 4];
                buf[n++] = hex[raw[i] & 0xf];
        }
        buf[n] = '\0';
        OPENSSL_cleanse(raw, sizeof raw);
        return 0;
}
