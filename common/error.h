/*
 * Error codes shared by common/ and proto/.
 *
 * Library code (common/, proto/) returns 0 or one of these negative codes and
 * never exits; process code turns them into log lines or fatal errors.
 */
#ifndef TP_ERROR_H
#define TP_ERROR_H

enum tp_err {
	TP_OK = 0,
	TP_EINVAL = -1,		/* invalid argument */
	TP_ENOMEM = -2,		/* out of memory */
	TP_ETOOBIG = -3,	/* exceeds a size or count limit */
	TP_EPROTO = -4,		/* malformed message */
	TP_ESYS = -5,		/* a system call failed; see errno */
	TP_ETRUNC = -6,		/* truncated input */
	TP_ETYPE = -7,		/* wrong type for a field */
	TP_EFIELD = -8,		/* unknown, missing or duplicate field */
	TP_EVERSION = -9,	/* protocol version mismatch */
	TP_ESYNTAX = -10,	/* syntax error */
	TP_ENOENT = -11,	/* not found */
	TP_ETIMEDOUT = -12,	/* a deadline passed */
	TP_EAGAIN = -13,	/* try again later */
	TP_ECLOSED = -14,	/* peer closed the connection */
	TP_EFD = -15,		/* missing, unexpected or bad file descriptor */
	TP_ECRYPTO = -16,	/* a cryptographic operation failed */
	TP_EDENIED = -17,	/* refused by policy */
	TP_EUNSUPP = -18,	/* unsupported algorithm or feature */
	TP_ESTATE = -19,	/* not allowed in the current state */
	TP_ERANGE = -20,	/* value out of range */
};

/* Returns a static, human-readable description of a tp_err code. */
const char *tp_strerror(int err);

#endif
