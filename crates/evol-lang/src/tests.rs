//! Each test text was written for these tests; its meaning is in a comment.

use super::*;

fn language(text: &str) -> Option<&'static str> {
    detect(text).language()
}

#[test]
fn languages_are_told_apart_in_every_script() {
    // "Explain how photosynthesis turns sunlight into chemical energy."
    assert_eq!(language("Explain how photosynthesis turns sunlight into chemical energy in plants."), Some("en"));
    assert_eq!(language("请解释光合作用是如何把阳光转化为植物体内的化学能的。"), Some("zh"));
    assert_eq!(language("कृपया समझाइए कि प्रकाश संश्लेषण सूर्य के प्रकाश को रासायनिक ऊर्जा में कैसे बदलता है।"), Some("hi"));
    assert_eq!(language("光合成がどのようにして太陽の光を化学エネルギーに変えるのか説明してください。"), Some("ja"));
    assert_eq!(language("اشرح كيف يحول التمثيل الضوئي ضوء الشمس إلى طاقة كيميائية في النباتات."), Some("ar"));
    assert_eq!(language("โปรดอธิบายว่าการสังเคราะห์ด้วยแสงเปลี่ยนแสงอาทิตย์เป็นพลังงานเคมีได้อย่างไร"), Some("th"));
    assert_eq!(language("광합성이 햇빛을 화학 에너지로 어떻게 바꾸는지 설명해 주세요."), Some("ko"));
    // "Explain, step by step, how photosynthesis turns sunlight into
    // chemical energy and why plants need water for it."
    let es = "Explica paso a paso cómo la fotosíntesis convierte la luz del sol en energía química y por qué las plantas necesitan agua para ello.";
    assert_eq!(language(es), Some("es"));
    // Too short to tell Italian from Spanish with confidence: not told,
    // never guessed ("Explain how photosynthesis works.").
    assert_eq!(detect("Spiega come funziona la fotosintesi."), Detection::Undetermined);
    assert_eq!(language("Объясните, как фотосинтез превращает солнечный свет в химическую энергию."), Some("ru"));
}

#[test]
fn mixed_text_is_read_by_its_prose_and_code_or_maths_alone_is_not_told() {
    // Chinese prose around English terms and code: "Use the function below
    // to sort the list, then explain its time complexity."
    let mixed = "请使用下面的 Python 函数对列表进行排序，然后解释它的时间复杂度。\n```python\ndef sort(xs):\n    return sorted(xs)\n```";
    assert_eq!(language(mixed), Some("zh"));
    // Hindi prose with a formula: "Solve the equation and show each step."
    assert_eq!(language("समीकरण $x^2 + 3x - 10 = 0$ को हल कीजिए और हर चरण दिखाइए।"), Some("hi"));
    // A long text is told by its first part ("Photosynthesis..." in
    // Chinese, at length, then English).
    let long = "光合作用把阳光转化为植物体内的化学能。".repeat(60) + &" The rest is in English.".repeat(200);
    assert!(long.len() > 4 * DETECT_BYTES);
    assert_eq!(language(&long), Some("zh"));
    for undetermined in [
        "OK",
        "42",
        "```rust\nfn main() { println!(\"{}\", 1 + 2); }\n```",
        "$\\frac{a}{b} + \\sqrt{c} = 17$",
        "| 1 | 2 | 3 |\n| 4 | 5 | 6 |",
        "https://example.org/a/b/c?d=1",
    ] {
        assert_eq!(detect(undetermined), Detection::Undetermined, "{undetermined:?}");
    }
}

#[test]
fn words_are_counted_by_segmentation_in_every_script() {
    assert_eq!(word_count("The cat sat on the mat, didn't it?"), 8);
    // "I went to the shop today and bought apples": 我 今天 去 商店 买 了 苹果.
    let zh = word_count("我今天去商店买了苹果。");
    assert!((5..=8).contains(&zh), "{zh}: neither one word nor one per character");
    // "I like to eat fried rice": ฉัน ชอบ กิน ข้าว ผัด.
    let th = word_count("ฉันชอบกินข้าวผัด");
    assert!((4..=6).contains(&th), "{th}");
    // "Today I went to the market." (Japanese) 今日 は 市場 に 行き まし た.
    let ja = word_count("今日は市場に行きました。");
    assert!((4..=8).contains(&ja), "{ja}");
    // "I went to the market today." (Hindi, Arabic): spaced scripts.
    assert_eq!(word_count("मैं आज बाज़ार गया।"), 4);
    assert_eq!(word_count("ذهبت إلى السوق اليوم."), 4);
    assert_eq!(word_count("  ... !!! "), 0);
    assert_eq!(word_count("Version 2.5 costs 30 dollars"), 5, "numbers are words");
}

#[test]
fn refusals_are_found_in_each_language_and_only_as_words() {
    let r = Refusals::builtin();
    // "Sorry, I cannot help you with this request."
    assert!(r.says_sorry("抱歉，我无法帮助你完成这个请求。", &["zh"]));
    assert!(r.says_sorry("माफ़ कीजिए, मैं इस अनुरोध में आपकी मदद नहीं कर सकता।", &["hi"]));
    assert!(r.says_sorry("申し訳ありませんが、このご依頼にはお応えできません。", &["ja"]));
    assert!(r.says_sorry("عذراً، لا يمكنني المساعدة في هذا الطلب.", &["ar"]));
    assert!(r.says_sorry("ขออภัย ฉันไม่สามารถช่วยเรื่องนี้ได้", &["th"]));
    assert!(r.says_sorry("Lo siento, no puedo ayudarte con esta solicitud.", &["es"]));
    assert!(r.says_sorry("I'm SORRY, I can't do that.", &["en"]));
    // The phrase of another language than those asked for is not read.
    assert!(!r.says_sorry("抱歉，我无法帮助你完成这个请求。", &["en", "ja"]));
    // Whole words where words are spaced: Indonesian "maaf" is not in
    // "permaafan"; a Spanish "disculpa" is not in "disculpable".
    assert!(!r.says_sorry("permaafan itu indah", &["id"]));
    assert!(!r.says_sorry("Es un error disculpable.", &["es"]));
    for code in BUILTIN {
        assert!(r.languages().any(|l| l == code), "{code} has phrases");
        assert!(is_known(code), "{code} is a language the detector knows");
    }
}

#[test]
fn refusal_files_extend_or_replace_the_built_in_ones() {
    let dir = std::env::temp_dir().join(format!("evol-lang-refusals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Hindi "sorry" in a casual register; Swahili "samahani" ("excuse me").
    std::fs::write(dir.join("hi.txt"), "# casual\nसॉरी\n").unwrap();
    std::fs::write(dir.join("sw.txt"), "samahani\n").unwrap();
    let extended = Refusals::with_dir(&dir, false).unwrap();
    assert!(extended.says_sorry("सॉरी, यह नहीं हो सकता।", &["hi"]));
    assert!(extended.says_sorry("क्षमा करें", &["hi"]), "the built-in phrases stay");
    assert!(extended.says_sorry("Samahani, siwezi.", &["sw"]));
    let replaced = Refusals::with_dir(&dir, true).unwrap();
    assert!(!replaced.says_sorry("क्षमा करें", &["hi"]), "replaced");
    std::fs::write(dir.join("Hindi.txt"), "x\n").unwrap();
    let err = Refusals::with_dir(&dir, false).unwrap_err();
    assert!(err.to_string().contains("Hindi.txt") && err.to_string().contains("language code"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stop_words_are_read_in_each_language_and_numbers_are_never_stop_words() {
    let s = StopWords::get();
    assert!(s.only_stop_words("It is what it is, isn’t it?", &["en"]));
    assert!(!s.only_stop_words("Paris is the capital of France.", &["en"]));
    // Chinese particles "of", "and": 的 和.
    assert!(s.only_stop_words("的，和。", &["zh"]));
    assert!(!s.only_stop_words("巴黎是法国的首都。", &["zh"]), "Paris is the capital of France.");
    // Hindi "and", "of": और का.
    assert!(s.only_stop_words("और का", &["hi"]));
    assert!(!s.only_stop_words("पेरिस फ़्रांस की राजधानी है।", &["hi"]));
    assert!(!s.only_stop_words("42", &["es"]), "an answer of a number says something");
    assert!(s.only_stop_words("...", &["en"]), "no words: nothing said");
}

#[test]
fn languages_have_names_for_prompts() {
    assert_eq!(name("hi"), "Hindi");
    assert_eq!(name("zh"), "Chinese");
    assert_eq!(name("xx"), "xx");
}
