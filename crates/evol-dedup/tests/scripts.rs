//! Near duplicates are as rare, and as common, in every script: the same
//! ten instructions in English, Chinese, Japanese and Thai (each written
//! for this test: "Please explain, step by step and in simple words, how
//! plants turn sunlight into food", then the water cycle, vaccines, a
//! loan's interest, the moon's phases, compilers, honey, earthquakes,
//! refrigerators and the heart), each also evolved by one added sentence
//! ("Use one everyday example and keep the answer under two hundred
//! words").

use evol_dedup::{Hasher, Params};

const ENGLISH: [&str; 10] = [
    "Please explain, step by step and in simple words, how plants turn sunlight into food.",
    "Please explain, step by step and in simple words, how water moves between the sea, the sky and the land.",
    "Please explain, step by step and in simple words, how a vaccine teaches the immune system to fight a disease.",
    "Please explain, step by step and in simple words, how the interest on a bank loan is calculated each month.",
    "Please explain, step by step and in simple words, why the moon seems to change its shape during the month.",
    "Please explain, step by step and in simple words, how a compiler turns source code into machine instructions.",
    "Please explain, step by step and in simple words, how bees make honey from the nectar of flowers.",
    "Please explain, step by step and in simple words, how the movement of tectonic plates causes earthquakes.",
    "Please explain, step by step and in simple words, how a refrigerator keeps the food inside it cold.",
    "Please explain, step by step and in simple words, how the heart pumps blood around the whole body.",
];
const ENGLISH_ADDED: &str = " Use one everyday example and keep the answer under two hundred words.";

const CHINESE: [&str; 10] = [
    "请用简单的语言一步一步地解释植物是如何把阳光变成食物的。",
    "请用简单的语言一步一步地解释水是如何在海洋、天空和陆地之间循环的。",
    "请用简单的语言一步一步地解释疫苗是如何训练免疫系统对抗疾病的。",
    "请用简单的语言一步一步地解释银行贷款的利息每个月是如何计算的。",
    "请用简单的语言一步一步地解释为什么月亮在一个月里看起来会改变形状。",
    "请用简单的语言一步一步地解释编译器是如何把源代码变成机器指令的。",
    "请用简单的语言一步一步地解释蜜蜂是如何用花蜜酿造蜂蜜的。",
    "请用简单的语言一步一步地解释板块运动是如何引发地震的。",
    "请用简单的语言一步一步地解释冰箱是如何让里面的食物保持低温的。",
    "请用简单的语言一步一步地解释心脏是如何把血液输送到全身的。",
];
const CHINESE_ADDED: &str = "请举一个日常生活中的例子，并把回答控制在两百字以内。";

const JAPANESE: [&str; 10] = [
    "植物が日光をどのように食べ物に変えるのかを、簡単な言葉で一歩ずつ説明してください。",
    "水が海と空と陸の間をどのように循環するのかを、簡単な言葉で一歩ずつ説明してください。",
    "ワクチンが免疫系に病気と戦う方法をどのように教えるのかを、簡単な言葉で一歩ずつ説明してください。",
    "銀行ローンの利息が毎月どのように計算されるのかを、簡単な言葉で一歩ずつ説明してください。",
    "月の形がひと月の間に変わって見えるのはなぜかを、簡単な言葉で一歩ずつ説明してください。",
    "コンパイラがソースコードをどのように機械語の命令に変えるのかを、簡単な言葉で一歩ずつ説明してください。",
    "ミツバチが花の蜜からどのように蜂蜜を作るのかを、簡単な言葉で一歩ずつ説明してください。",
    "プレートの動きがどのように地震を引き起こすのかを、簡単な言葉で一歩ずつ説明してください。",
    "冷蔵庫が中の食べ物をどのように冷たく保つのかを、簡単な言葉で一歩ずつ説明してください。",
    "心臓が血液をどのように全身に送り出すのかを、簡単な言葉で一歩ずつ説明してください。",
];
const JAPANESE_ADDED: &str = "身近な例を一つ挙げ、回答は二百字以内にまとめてください。";

const THAI: [&str; 10] = [
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าพืชเปลี่ยนแสงแดดเป็นอาหารได้อย่างไร",
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าน้ำเคลื่อนที่ระหว่างทะเล ท้องฟ้า และแผ่นดินอย่างไร",
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าวัคซีนสอนระบบภูมิคุ้มกันให้ต่อสู้กับโรคได้อย่างไร",
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าดอกเบี้ยเงินกู้ธนาคารคำนวณอย่างไรในแต่ละเดือน",
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าทำไมดวงจันทร์จึงดูเหมือนเปลี่ยนรูปร่างในแต่ละเดือน",
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าคอมไพเลอร์แปลงซอร์สโค้ดเป็นคำสั่งเครื่องได้อย่างไร",
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าผึ้งทำน้ำผึ้งจากน้ำหวานของดอกไม้ได้อย่างไร",
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าการเคลื่อนที่ของแผ่นเปลือกโลกทำให้เกิดแผ่นดินไหวได้อย่างไร",
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าตู้เย็นทำให้อาหารข้างในเย็นได้อย่างไร",
    "กรุณาอธิบายทีละขั้นตอนด้วยภาษาง่ายๆ ว่าหัวใจสูบฉีดเลือดไปทั่วร่างกายได้อย่างไร",
];
const THAI_ADDED: &str = " ยกตัวอย่างจากชีวิตประจำวันหนึ่งตัวอย่าง และตอบไม่เกินสองร้อยคำ";

/// Mean estimated similarity of the 45 pairs of different instructions,
/// and of each instruction with its evolution.
fn similarities(texts: &[&str; 10], added: &str) -> (f64, f64) {
    let hasher = Hasher::new(Params::default());
    let prints: Vec<_> = texts.iter().map(|t| hasher.fingerprint(t)).collect();
    let mut unrelated = Vec::new();
    for i in 0..10 {
        for j in i + 1..10 {
            unrelated.push(evol_dedup::similarity(prints[i].signature().unwrap(), prints[j].signature().unwrap()));
        }
    }
    let evolved: Vec<f64> = texts
        .iter()
        .zip(&prints)
        .map(|(t, p)| {
            evol_dedup::similarity(
                p.signature().unwrap(),
                hasher.fingerprint(&format!("{t}{added}")).signature().unwrap(),
            )
        })
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (mean(&unrelated), mean(&evolved))
}

#[test]
fn different_instructions_and_evolutions_are_as_similar_in_every_script() {
    let english = similarities(&ENGLISH, ENGLISH_ADDED);
    for (name, texts, added) in
        [("Chinese", &CHINESE, CHINESE_ADDED), ("Japanese", &JAPANESE, JAPANESE_ADDED), ("Thai", &THAI, THAI_ADDED)]
    {
        let (unrelated, evolved) = similarities(texts, added);
        eprintln!("{name}: unrelated {unrelated:.3}, evolved {evolved:.3}; English {:.3}, {:.3}", english.0, english.1);
        // Instructions that share only their frame are no nearer than
        // English ones (within a margin the frame's length explains).
        assert!(unrelated <= english.0 + 0.12, "{name}: {unrelated:.3} against English {:.3}", english.0);
        // And an evolution is about as near its parent as in English.
        assert!((evolved - english.1).abs() <= 0.15, "{name}: {evolved:.3} against English {:.3}", english.1);
    }
}
