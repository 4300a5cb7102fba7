//! Writes an agent's Outlook HTML answer as the customer's mail client shows it, for
//! `scripts/answer-screenshot.sh`: `cargo run --example html_answer -- SCREENSHOT.png OUT.html`.
//! The answer goes through the relay's own steps (`render::html::answer`, then
//! `render::reply`); the page is the relayed mail's HTML part with its `cid:` images taken
//! from the mail's related parts, and the From, To and Subject the customer sees above it.

use std::process::ExitCode;

use base64::Engine as _;
use deskgate::agent::sign::Signer;
use deskgate::config::{Agent, Support};
use deskgate::language::Lang;
use deskgate::model::{Person, Priority, TicketId, TicketState, TicketStatus};
use deskgate::parse::Attachment;
use deskgate::render::{ReplyFor, Templates, html, reply};
use mail_parser::{MessageParser, MimeHeaders};

/// Outlook for Windows: Word HTML, a pasted screenshot, the quoted notification below the
/// `border-top` header block (which the customer never sees).
const OUTLOOK: &str = r##"<html><head><style><!-- p.MsoNormal {margin:0cm; font-family:"Calibri",sans-serif;} --></style></head>
<body lang="EN-GB" link="#0563C1"><div class="WordSection1">
<p class="MsoNormal">Hello Mona,<o:p></o:p></p>
<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<p class="MsoNormal"><b><span style="color:#C00000">Please switch the printer off at the wall before you open it.</span></b><o:p></o:p></p>
<p class="MsoNormal">Then:<o:p></o:p></p>
<ol style="margin-top:0cm" start="1" type="1">
<li class="MsoListParagraph" style="margin-left:0cm;mso-list:l0 level1 lfo1">Unplug the power cable<o:p></o:p></li>
<li class="MsoListParagraph" style="margin-left:0cm;mso-list:l0 level1 lfo1">Wait ten minutes<o:p></o:p></li>
<li class="MsoListParagraph" style="margin-left:0cm;mso-list:l0 level1 lfo1">Print the test page from the settings shown below<o:p></o:p></li>
</ol>
<p class="MsoNormal"><img width="570" height="240" id="Picture_x0020_1" src="cid:image001.png@01DB1234.56789AB0" alt="Screenshot of the settings"><o:p></o:p></p>
<p class="MsoNormal">The <a href="https://example.com/kb/printer-reset">reset guide</a> has pictures of each step.<o:p></o:p></p>
<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<p class="MsoNormal">Kind regards,<br><b>Alice Agent</b><br><span style="color:#7F7F7F">Customer Support · Example Ltd</span><o:p></o:p></p>
<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> Example Support &lt;support+42.0123456789abcdef0123@example.com&gt;<br><b>Sent:</b> Monday, November 23, 2026 10:00 AM</p></div>
<p class="MsoNormal">##- Please type your reply above this line -##</p>
<p class="MsoNormal">New ticket [#42] from Mona Q: My printer is on fire.</p>
</div></body></html>"##;

const CID: &str = "image001.png@01DB1234.56789AB0";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [image, out] = &args[..] else {
        eprintln!("usage: html_answer SCREENSHOT.png OUT.html");
        return ExitCode::from(2);
    };
    match write_page(image, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("html_answer: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_page(image: &str, out: &str) -> anyhow::Result<()> {
    let support = Support {
        address: "support@example.com".parse()?,
        name: "Example Support".into(),
        tag_prefix: "#".into(),
        timezone: jiff::tz::TimeZone::UTC,
        language: Lang::En,
    };
    let signer = Signer::new(&[7u8; 32], &support.address, "+");
    let agent = Agent {
        name: "Alice Agent".into(),
        address: "alice@example.com".into(),
        alternates: Vec::new(),
        language: Lang::En,
    };
    let customer = Person::new("mona@example.net", Some("Mona Q"));
    let ticket = TicketState {
        id: TicketId(42),
        mailbox: "support".into(),
        subject: "My printer is on fire".into(),
        status: TicketStatus::Open,
        priority: Priority::Normal,
        assigned: None,
        customer: Some(customer.clone()),
        customers: vec![customer],
        created_at: jiff::Timestamp::now(),
        language: Some(Lang::En),
        address: None,
    };
    let answer = html::answer(OUTLOOK).ok_or_else(|| anyhow::anyhow!("no answer in the HTML"))?;
    let screenshot = Attachment {
        name: "image001.png".into(),
        content_type: "image/png".into(),
        data: std::fs::read(image)?,
        content_id: Some(CID.into()),
    };
    let relayed = reply(
        &support,
        &Templates::builtin(),
        &signer,
        ReplyFor {
            ticket: &ticket,
            agent: &agent,
            body: &answer.text,
            answers: None,
            attachments: &[screenshot],
            html: Some(&answer),
        },
        jiff::Timestamp::now(),
    )?;
    let mail = MessageParser::default()
        .parse(&relayed.raw)
        .ok_or_else(|| anyhow::anyhow!("the relayed mail does not parse"))?;
    let mut page = mail.body_html(0).unwrap_or_default().into_owned();
    for part in &mail.parts {
        if let Some(cid) = part.content_id() {
            let data = base64::engine::general_purpose::STANDARD.encode(part.contents());
            page = page.replace(
                &format!("cid:{cid}"),
                &format!("data:image/png;base64,{data}"),
            );
        }
    }
    let from = "Alice Agent via Example Support &lt;support@example.com&gt;";
    let heading = format!(
        "<div style=\"font-family: sans-serif; border-bottom: 1px solid #ddd; padding: 0 0 8px; margin-bottom: 12px; color: #333;\"><div style=\"font-size: 18px; font-weight: bold;\">{}</div><div>From: {from}</div><div>To: Mona Q &lt;mona@example.net&gt;</div></div>",
        relayed.subject
    );
    let body_at = page
        .find("<body")
        .and_then(|at| page[at..].find('>').map(|end| at + end + 1))
        .ok_or_else(|| anyhow::anyhow!("no <body> in the HTML part"))?;
    page.insert_str(body_at, &heading);
    std::fs::write(out, page)?;
    Ok(())
}
