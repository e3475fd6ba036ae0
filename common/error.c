#include "error.h"

const char *
tp_strerror(int err)
{
	switch (err) {
	case TP_OK:		return "success";
	case TP_EINVAL:		return "invalid argument";
	case TP_ENOMEM:		return "out of memory";
	case TP_ETOOBIG:	return "too big";
	case TP_EPROTO:		return "malformed message";
	case TP_ESYS:		return "system call failed";
	case TP_ETRUNC:		return "truncated input";
	case TP_ETYPE:		return "wrong type";
	case TP_EFIELD:		return "unknown, missing or duplicate field";
	case TP_EVERSION:	return "protocol version mismatch";
	case TP_ESYNTAX:	return "syntax error";
	case TP_ENOENT:		return "not found";
	case TP_ETIMEDOUT:	return "timed out";
	case TP_EAGAIN:		return "try again";
	case TP_ECLOSED:	return "connection closed";
	case TP_EFD:		return "bad file descriptor";
	case TP_ECRYPTO:	return "cryptographic operation failed";
	case TP_EDENIED:	return "denied by policy";
	case TP_EUNSUPP:	return "unsupported";
	case TP_ESTATE:		return "not allowed in this state";
	case TP_ERANGE:		return "out of range";
	}
	return "unknown error";
}
