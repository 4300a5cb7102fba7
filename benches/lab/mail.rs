//! Realistic customer mail for the benchmark: the headers a mailbox provider and a mail client
//! add (trace fields, DKIM, user agent), about 1.5 KB of text, and every tenth message a
//! multipart/mixed with a small PDF attachment, every fifth a text + HTML alternative.
//! Deterministic: message `i` is always the same bytes (except its Date).

/// Words customers write with; sentences are drawn from them by index arithmetic.
const SENTENCES: [&str; 12] = [
    "Our office printer stopped working after this morning's update and shows error 0x4F.",
    "I have attached the invoice you sent last month; the amount does not match the contract.",
    "Could you tell me when the replacement part will arrive? We were promised Tuesday.",
    "The login page keeps saying my password expired although I changed it yesterday.",
    "We would like to add three more users to our plan before the end of the quarter.",
    "Since the migration, emails from your system land in our spam folder.",
    "Please cancel the order placed by my colleague; it was a duplicate of ours.",
    "The mobile app crashes whenever I open the reports tab on Android 15.",
    "Is there a way to export all tickets of our team to a spreadsheet?",
    "Thank you for the quick help last time; this is a different problem, though.",
    "My name is spelled wrong on the certificate; it should read as in my signature.",
    "We are still waiting for the refund you confirmed two weeks ago.",
];

const NAMES: [&str; 5] = [
    "Maria Papadopoulou",
    "John Smith",
    "Fatima Al-Sayed",
    "Lukas Becker",
    "Aiko Tanaka",
];

/// Message `i` to `to` from [`sender`]`(i)`, with the Message-ID
/// `<bench-{tag}-{i}@client.example.net>`.
pub fn customer_mail(domain: &str, to: &str, tag: &str, i: usize) -> Vec<u8> {
    let k = i % 5;
    let address = sender(domain, i);
    let from = format!("{} <{address}>", NAMES[k]);
    let subject = format!(
        "{} (order {})",
        SENTENCES[(i * 7) % SENTENCES.len()]
            .split(['.', '?', ';'])
            .next()
            .unwrap_or("Question"),
        100_000 + i
    );
    let mut text = String::from("Hello,\r\n\r\n");
    for s in 0..9 {
        text.push_str(SENTENCES[(i + s * 5) % SENTENCES.len()]);
        text.push_str(if s % 3 == 2 { "\r\n\r\n" } else { " " });
    }
    text.push_str(&format!(
        "Best regards,\r\n{}\r\nCustomer number {}\r\n",
        NAMES[k],
        70_000 + i % 997
    ));
    let head = format!(
        "Return-Path: <{address}>\r\n\
         Received: from mail-out.client.example.net (mail-out.client.example.net [198.51.100.{ip}])\r\n\
         \tby mx.{domain} (Postfix) with ESMTPS id 4Y{i:08X}\r\n\
         \tfor <{to}>; Mon, 23 Nov 2026 10:{mm:02}:{ss:02} +0000 (UTC)\r\n\
         Received: from [10.0.0.{ip}] (unknown [203.0.113.{ip}])\r\n\
         \tby mail-out.client.example.net (Postfix) with ESMTPSA id 7A{i:08X}\r\n\
         \tfor <{to}>; Mon, 23 Nov 2026 10:{mm:02}:{ss:02} +0000 (UTC)\r\n\
         DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=client.example.net;\r\n\
         \ts=2026; t=1795000000; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\
         \th=From:To:Subject:Date:Message-ID;\r\n\
         \tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaGFzIHRoZSBsZW5ndGggb2Yg\r\n\
         \t YSByZWFsIG9uZSBzbyB0aGF0IGhlYWRlcnMgd2VpZ2ggd2hhdCB0aGV5IHdlaWdoIGluIHJl=\r\n\
         From: {from}\r\n\
         To: Support <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <bench-{tag}-{i}@client.example.net>\r\n\
         User-Agent: Mozilla Thunderbird 128.5\r\n\
         Content-Language: en-US\r\n\
         MIME-Version: 1.0\r\n",
        ip = 10 + i % 200,
        mm = i / 60 % 60,
        ss = i % 60,
        date = "Mon, 23 Nov 2026 10:00:00 +0000",
    );
    let mut out = head.into_bytes();
    let boundary = format!("------------b{i:010}");
    if i.is_multiple_of(10) {
        out.extend_from_slice(
            format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
                 This is a multi-part message in MIME format.\r\n\
                 --{boundary}\r\n\
                 Content-Type: text/plain; charset=UTF-8; format=flowed\r\n\
                 Content-Transfer-Encoding: 7bit\r\n\r\n\
                 {text}\r\n\
                 --{boundary}\r\n\
                 Content-Type: application/pdf; name=\"invoice-{i}.pdf\"\r\n\
                 Content-Disposition: attachment; filename=\"invoice-{i}.pdf\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n\
                 {pdf}\
                 --{boundary}--\r\n",
                pdf = base64_lines(&fake_pdf(i, 1500)),
            )
            .as_bytes(),
        );
    } else if i % 5 == 1 {
        let html = text
            .split("\r\n\r\n")
            .map(|p| format!("<p>{}</p>", p.replace("\r\n", "<br>")))
            .collect::<String>();
        out.extend_from_slice(
            format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
                 --{boundary}\r\n\
                 Content-Type: text/plain; charset=UTF-8\r\n\
                 Content-Transfer-Encoding: 7bit\r\n\r\n\
                 {text}\r\n\
                 --{boundary}\r\n\
                 Content-Type: text/html; charset=UTF-8\r\n\
                 Content-Transfer-Encoding: 7bit\r\n\r\n\
                 <html><body>{html}</body></html>\r\n\
                 --{boundary}--\r\n"
            )
            .as_bytes(),
        );
    } else {
        out.extend_from_slice(
            format!(
                "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n\
                 Content-Transfer-Encoding: 7bit\r\n\r\n{text}"
            )
            .as_bytes(),
        );
    }
    out
}

/// The sender of message `i`: a support mailbox hears from many customers, some of them
/// more than once (every third message comes from a customer seen before). The addresses are
/// the lab's customer1..customer5 with a `+` tag, so acknowledgements are delivered.
pub fn sender(domain: &str, i: usize) -> String {
    let c = i - i / 3;
    format!("customer{}+c{c}@{domain}", c % 5 + 1)
}

/// A message of about `mb` MiB, nearly all of it a binary attachment (base64), to `to`.
pub fn large_mail(domain: &str, to: &str, mb: usize) -> Vec<u8> {
    let boundary = "------------large";
    // base64 grows 4/3 plus line ends: this many raw bytes make about `mb` MiB of message
    let raw = fake_pdf(7, mb * 1024 * 1024 * 3 / 4 * 76 / 78);
    format!(
        "From: Lukas Becker <customer4@{domain}>\r\n\
         To: {to}\r\n\
         Subject: Scans of the damaged delivery\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <bench-large@client.example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\r\n\
         Hello, the scans of every damaged box are attached.\r\n\
         --{boundary}\r\n\
         Content-Type: application/pdf; name=\"scans.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n\
         {}\
         --{boundary}--\r\n",
        base64_lines(&raw)
    )
    .into_bytes()
}

/// Bytes that look like a PDF (a header, then pseudo-random content).
fn fake_pdf(seed: usize, len: usize) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut x = seed as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Base64 in 76-character lines, each ended by CRLF.
fn base64_lines(data: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(text.len() + text.len() / 76 * 2 + 2);
    for line in text.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push_str("\r\n");
    }
    out
}
