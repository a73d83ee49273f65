package tracking

import (
	"net/http"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"golang.org/x/text/message/catalog"
)

// Languages are the preference centre's languages, in the order the
// Accept-Language matcher prefers them: English (the fallback) and
// Traditional Chinese.
var Languages = []language.Tag{language.English, language.TraditionalChinese}

// messages is the preference centre's message catalog: key (the English
// text, with fmt verbs) → Traditional Chinese. Add a language by adding
// a column here and a tag to Languages.
var messages = map[string]string{
	"Email preferences":  "電子郵件偏好設定",
	"Preferences for %s": "%s 的訂閱設定",
	"Lists you receive":  "您收到的郵件清單",
	"Uncheck a list to stop receiving it, then save.": "取消勾選清單即可停止接收，然後儲存。",
	"Save preferences":                        "儲存設定",
	"Unsubscribe from everything":             "全部取消訂閱",
	"Stop all %s mail to %s.":                 "停止寄送所有%s郵件給 %s。",
	"Unsubscribe from all":                    "取消所有訂閱",
	"You are not on any list.":                "您目前沒有訂閱任何清單。",
	"Your preferences are saved.":             "您的設定已儲存。",
	"%s will get no more %s mail.":            "%s 將不會再收到%s郵件。",
	"This link is not valid.":                 "此連結無效。",
	"Something went wrong. Please try again.": "發生錯誤，請再試一次。",
	"unsubscribed":                            "已取消訂閱",
	"bounced":                                 "無法投遞",
	"complained":                              "已回報為垃圾郵件",
	"marketing":                               "行銷",
	"transactional":                           "交易通知",
	"Not receiving (%s)":                      "未接收（%s）",
	"Your choices are recorded with the time of the change.": "您的選擇會連同變更時間一併記錄。",
}

// catalogue builds the x/text message catalog from messages.
func catalogue() catalog.Catalog {
	b := catalog.NewBuilder(catalog.Fallback(language.English))
	for en, zh := range messages {
		_ = b.SetString(language.English, en, en) // plain strings cannot fail
		_ = b.SetString(language.TraditionalChinese, en, zh)
	}
	return b
}

// localizer picks a language from Accept-Language and prints messages
// in it.
type localizer struct {
	matcher  language.Matcher
	printers []*message.Printer // per Languages index
}

func newLocalizer() *localizer {
	cat := catalogue()
	l := &localizer{matcher: language.NewMatcher(Languages)}
	for _, t := range Languages {
		l.printers = append(l.printers, message.NewPrinter(t, message.Catalog(cat)))
	}
	return l
}

// pick returns the best of Languages for r's Accept-Language (English
// when it names none of them or cannot be parsed) and its printer.
func (l *localizer) pick(r *http.Request) (language.Tag, *message.Printer) {
	tags, _, err := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	if err != nil || len(tags) == 0 {
		return Languages[0], l.printers[0]
	}
	_, i, conf := l.matcher.Match(tags...)
	if conf == language.No {
		i = 0
	}
	return Languages[i], l.printers[i]
}
