/* bcryptprimitives.dll for Wine 8, which has none: Rust's std (1.78 and later) takes its random bytes
 * (HashMap keys) from ProcessPrng there, so no Rust test binary starts under Wine without it. This one
 * forwards to advapi32's RtlGenRandom (SystemFunction036), as Wine's later versions do. It is copied into the
 * Wine prefix of `make test-cross` only, never into a wheel (Windows 10 and later have the real one). */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
