/*
 * lgr_text.c: the text forms the JSON units share (see lgr_text.h).
 */
#include "lgr_text.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- numbers in the C locale ------------------------------------------------------------------------------------ */

/* snprintf and strtod follow LC_NUMERIC, which rsyslogd sets from the environment; uselocale() is per thread. */
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void)
{
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

locale_t lgr_text_c_locale_enter(void)
{
	pthread_once(&c_locale_once, c_locale_init);
	return c_locale != (locale_t)0 ? uselocale(c_locale) : (locale_t)0;
}

void lgr_text_c_locale_leave(locale_t old)
{
	if (old != (locale_t)0)
		uselocale(old);
}

/* --- UTF-8 -------------------------------------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence that starts s[0..n) (Unicode 3-7: no overlongs, surrogates), or 0. */
size_t lgr_text_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		lo = s[0] == 0xe0 ? 0xa0 : 0x80;
		hi = s[0] == 0xed ? 0x9f : 0xbf;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		lo = s[0] == 0xf0 ? 0x90 : 0x80;
		hi = s[0] == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

bool lgr_text_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, l;

	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		l = lgr_text_utf8_seq(s + i, n - i);
		if (l == 0)
			return false;
		i += l;
	}
	return true;
}

/* --- numbers out -------------------------------------------------------------------------------------------------- */

/* Decimal digits of mag, with a '-' when neg, at the end of t; returns where they start. */
char *lgr_text_int(uint64_t mag, bool neg, char t[LGR_TEXT_INT_MAX])
{
	char *p = t + LGR_TEXT_INT_MAX - 1;

	*p = '\0';
	do {
		*--p = (char)('0' + mag % 10);
		mag /= 10;
	} while (mag != 0);
	if (neg)
		*--p = '-';
	return p;
}

/*
 * Gauges mostly carry values with a few decimals (12.5, 0.25): m / 10^k for the smallest k <= 4 that reads back as
 * mag is its shortest text (m has at most 15 digits, so it is also what the 15-digit search below finds), written
 * without snprintf and strtod. m is the integer nearest mag * 10^k: for mag < 1e11 any m that reads back is within
 * 0.08 of the exact product and the computed product within 0.11 of it, so rounding cannot miss it. Returns false
 * when there is no such k; else the text is in out (NUL-terminated) and its length in *len.
 */
static bool short_decimal(double mag, char *out, size_t *len)
{
	static const double scale[] = {1, 10, 100, 1000, 10000};
	char t[LGR_TEXT_INT_MAX], *digits;
	uint64_t m;
	size_t n, k;

	if (!(mag >= 1e-4 && mag < 1e11))
		return false;
	for (k = 1; k < sizeof(scale) / sizeof(scale[0]); k++) {
		m = (uint64_t)(mag * scale[k] + 0.5);
		if ((double)m / scale[k] == mag)
			break;
	}
	if (k == sizeof(scale) / sizeof(scale[0]))
		return false;
	digits = lgr_text_int(m, false, t);
	n = strlen(digits);
	if (n <= k) { /* 0.000d */
		memcpy(out, "0.0000", 2 + k - n);
		memcpy(out + 2 + k - n, digits, n);
		*len = 2 + k;
	} else {
		memcpy(out, digits, n - k);
		out[n - k] = '.';
		memcpy(out + n - k + 1, digits + n - k, k);
		*len = n + 1;
	}
	out[*len] = '\0';
	return true;
}

/*
 * The shortest decimal that reads back as v (finite), laid out as protojson and lgr_json_write() lay it out: plain
 * for 1e-6 <= |v| < 1e21, else d[.ddd]e±X. Digits: a normal double holds more than 15 significant decimal digits,
 * so if any shorter decimal reads back as v, the 15-digit rounding of v is that decimal padded with zeros; 16 and
 * 17 digits are tried next (17 always read back). Subnormals hold fewer digits: their search starts at 1. Two
 * common cases skip the search: integers below 2^53 are their own shortest form, and so are short decimals
 * (short_decimal). Returns the length written to out (NUL-terminated).
 */
size_t lgr_text_double(double v, char out[LGR_TEXT_DOUBLE_MAX])
{
	char sci[LGR_TEXT_DOUBLE_MAX], digits[20], *p = out;
	double mag = fabs(v);
	size_t nd = 0, i;
	int prec, e10;

	if (signbit(v))
		*p++ = '-';
	if (mag == 0) {
		*p++ = '0';
		*p = '\0';
		return (size_t)(p - out);
	}
	if (mag < 9007199254740992.0 && mag == (double)(uint64_t)mag) {
		char t[LGR_TEXT_INT_MAX], *s = lgr_text_int((uint64_t)mag, false, t);

		strcpy(p, s);
		return (size_t)(p - out) + strlen(s);
	}
	if (short_decimal(mag, p, &nd))
		return (size_t)(p - out) + nd;
	for (prec = mag < DBL_MIN ? 1 : 15;; prec++) {
		snprintf(sci, sizeof(sci), "%.*e", prec - 1, mag);
		if (prec >= 17 || strtod(sci, NULL) == mag)
			break;
	}
	/* sci is d.ddde±XX */
	for (i = 0; sci[i] != 'e'; i++)
		if (sci[i] != '.')
			digits[nd++] = sci[i];
	e10 = atoi(sci + i + 1);
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;

	if (mag < 1e-6 || mag >= 1e21) {
		*p++ = digits[0];
		if (nd > 1) {
			*p++ = '.';
			memcpy(p, digits + 1, nd - 1);
			p += nd - 1;
		}
		p += snprintf(
			p, LGR_TEXT_DOUBLE_MAX - (size_t)(p - out), "e%c%d", e10 < 0 ? '-' : '+', e10 < 0 ? -e10 : e10);
	} else if (e10 >= 0) {
		for (i = 0; i <= (size_t)e10; i++)
			*p++ = i < nd ? digits[i] : '0';
		if (nd > (size_t)e10 + 1) {
			*p++ = '.';
			memcpy(p, digits + e10 + 1, nd - (size_t)e10 - 1);
			p += nd - (size_t)e10 - 1;
		}
	} else {
		*p++ = '0';
		*p++ = '.';
		for (i = 1; i < (size_t)-e10; i++)
			*p++ = '0';
		memcpy(p, digits, nd);
		p += nd;
	}
	*p = '\0';
	return (size_t)(p - out);
}
