package events

import "strings"

// providers maps host-name suffixes of MX hosts (and the best-known
// mailbox domains, for events without an MX) to a provider label. Order
// matters only for overlapping suffixes; the first match wins.
var providers = []struct{ suffix, name string }{
	{"google.com", "google"},
	{"googlemail.com", "google"},
	{"gmail.com", "google"},
	{"outlook.com", "outlook"},
	{"hotmail.com", "outlook"},
	{"live.com", "outlook"},
	{"msn.com", "outlook"},
	{"yahoodns.net", "yahoo"},
	{"yahoo.com", "yahoo"},
	{"aol.com", "yahoo"},
	{"icloud.com", "apple"},
	{"me.com", "apple"},
	{"mac.com", "apple"},
	{"apple.com", "apple"},
	{"pphosted.com", "proofpoint"},
	{"mimecast.com", "mimecast"},
	{"gmx.net", "gmx"},
	{"web.de", "gmx"},
	{"mail.ru", "mailru"},
	{"yandex.net", "yandex"},
	{"yandex.ru", "yandex"},
	{"zoho.com", "zoho"},
	{"qq.com", "qq"}, // mx1.qq.com, mxbiz1.qq.com (Tencent Exmail); also foxmail.com mailboxes
	{"foxmail.com", "qq"},
	{"netease.com", "163"}, // 163mx01.mxmail.netease.com, 126mx00.mxmail.netease.com; NetEase mailbox domains below
	{"163.com", "163"},
	{"126.com", "163"},
	{"yeah.net", "163"},
}

// Provider returns the mailbox provider label of an MX host name, or of
// the recipient's domain when mx is empty: google, outlook, yahoo, apple,
// proofpoint, mimecast, gmx, mailru, yandex, zoho, qq, 163 (NetEase) or
// other.
func Provider(mx, rcpt string) string {
	host := strings.ToLower(strings.TrimSuffix(mx, "."))
	if host == "" {
		if at := strings.LastIndexByte(rcpt, '@'); at >= 0 {
			host = strings.ToLower(rcpt[at+1:])
		}
	}
	if host == "" {
		return "other"
	}
	for _, p := range providers {
		// host is the suffix or ends in "."+suffix (without building it).
		if n := len(host) - len(p.suffix); strings.HasSuffix(host, p.suffix) && (n == 0 || host[n-1] == '.') {
			return p.name
		}
	}
	return "other"
}

// domainOf returns the lower-cased domain of addr ("" without an @).
func domainOf(addr string) string {
	addr = strings.Trim(strings.TrimSpace(addr), "<>")
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return strings.ToLower(addr[at+1:])
	}
	return ""
}
