//! Every constraint kind against answers that keep it and answers that
//! break it (`fixtures.json`: id, kwargs, answer, whether it passes, and
//! for text not in English what it says), in several scripts.

use evol_constraints::{Constraint, GroundTruth, IDS};
use serde_json::Value;

fn fixtures() -> Vec<Value> {
    serde_json::from_str(include_str!("fixtures.json")).unwrap()
}

#[test]
fn every_kind_passes_and_fails_as_its_fixtures_say() {
    let fixtures = fixtures();
    for id in IDS {
        let of_kind: Vec<&Value> = fixtures.iter().filter(|f| f["id"] == *id).collect();
        assert!(of_kind.iter().any(|f| f["pass"] == true), "{id}: no passing fixture");
        assert!(of_kind.iter().any(|f| f["pass"] == false), "{id}: no failing fixture");
    }
    for f in &fixtures {
        let id = f["id"].as_str().unwrap();
        let constraint = Constraint::from_parts(id, &f["kwargs"]).unwrap_or_else(|e| panic!("{e}"));
        let answer = f["answer"].as_str().unwrap();
        let result = constraint.check(answer);
        assert_eq!(result.is_ok(), f["pass"] == true, "{id} on {answer:?} ({}): {result:?}", f["note"]);
        if let Err(broken) = result {
            assert_eq!(broken.id, id);
            assert!(broken.to_string().starts_with(&format!("{id}: ")), "{broken}");
        }
    }
}

#[test]
fn constraints_round_trip_through_the_ground_truth_layout() {
    let constraints: Vec<Constraint> =
        fixtures().iter().map(|f| Constraint::from_parts(f["id"].as_str().unwrap(), &f["kwargs"]).unwrap()).collect();
    let truth = GroundTruth::new(&constraints);
    let text = serde_json::to_string(&truth).unwrap();
    let back: GroundTruth = serde_json::from_str(&text).unwrap();
    assert_eq!(back.constraints().unwrap(), constraints);
    let label = truth.to_label();
    assert!(label.starts_with("[{\"instruction_id\":[") && !label.contains("null"), "{label}");
    assert_eq!(GroundTruth::from_label(&label).unwrap(), truth);
    assert_eq!(GroundTruth::from_label(&serde_json::to_string(&label).unwrap()).unwrap(), truth, "encoded twice");
    assert_eq!(GroundTruth::from_label(&text).unwrap(), truth, "the object alone");
    assert!(GroundTruth::from_label("[1, 2]").unwrap_err().starts_with("not a ground truth"));
    assert_eq!(truth.instruction_id[0], "keywords:existence");
    assert_eq!(truth.kwargs[0], serde_json::json!({"keywords": ["river", "bridge"]}));
    let no_args = constraints.iter().position(|c| c.id() == "detectable_format:json_format").unwrap();
    assert_eq!(truth.kwargs[no_args], serde_json::json!({}));
}

#[test]
fn bad_constraints_are_refused_by_place() {
    let bad = |ids: &[&str], kwargs: Value| {
        let truth = GroundTruth {
            instruction_id: ids.iter().map(|s| s.to_string()).collect(),
            kwargs: serde_json::from_value(kwargs).unwrap(),
        };
        truth.constraints().unwrap_err().to_string()
    };
    let e = bad(&["punctuation:no_comma", "keywords:nonsense"], serde_json::json!([{}, {}]));
    assert_eq!(e, "constraint 1: unknown constraint id `keywords:nonsense`");
    let e = bad(&["length_constraints:number_words"], serde_json::json!([{"num_words": 5, "relation": "about"}]));
    assert!(e.starts_with("constraint 0: `length_constraints:number_words`: unknown variant `about`"), "{e}");
    let e = bad(&["length_constraints:number_words"], serde_json::json!([{"num_words": 5}]));
    assert!(e.contains("missing field `relation`"), "{e}");
    let e = bad(&["punctuation:no_comma"], serde_json::json!([{"extra": 1}]));
    assert!(e.contains("unknown field `extra`"), "{e}");
    let e = bad(
        &["keywords:letter_frequency"],
        serde_json::json!([{"letter": "ab", "let_frequency": 1, "let_relation": "at least"}]),
    );
    assert!(e.contains("letter must be one letter"), "{e}");
    let e = bad(
        &["length_constraints:nth_paragraph_first_word"],
        serde_json::json!([{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "x"}]),
    );
    assert!(e.contains("nth_paragraph must be from 1 to num_paragraphs (2)"), "{e}");
    let e = bad(&["language:response_language"], serde_json::json!([{"language": "xx"}]));
    assert!(e.contains("`xx` is not a language code"), "{e}");
    let e = bad(&["punctuation:no_comma", "startend:quotation"], serde_json::json!([{}]));
    assert_eq!(e, "constraint 1: 2 ids but 1 kwargs");
}

#[test]
fn a_broken_constraint_says_what_was_found() {
    let words = Constraint::from_parts(
        "length_constraints:number_words",
        &serde_json::json!({"num_words": 4, "relation": "at least"}),
    )
    .unwrap();
    assert_eq!(
        words.check("only three words").unwrap_err().to_string(),
        "length_constraints:number_words: 3 words, wanted at least 4"
    );
    let keywords = Constraint::Keywords { keywords: vec!["river".into(), "bridge".into()] };
    assert_eq!(keywords.check("no such thing").unwrap_err().found, "missing `river`, `bridge`");
    let all = [Constraint::NoComma {}, keywords];
    assert_eq!(evol_constraints::check_all(&all, "a river, a bridge").unwrap_err().id, "punctuation:no_comma");
    assert!(evol_constraints::check_all(&all, "a river and a bridge").is_ok());
}

#[test]
fn every_description_states_each_argument() {
    for f in fixtures() {
        let id = f["id"].as_str().unwrap();
        let constraint = Constraint::from_parts(id, &f["kwargs"]).unwrap();
        let text = constraint.describe();
        assert!(text.ends_with('.') && !text.contains("{"), "{id}: {text}");
        for literal in constraint.literals() {
            assert!(text.contains(&format!("\"{literal}")), "{id}: `{literal}` is not quoted in {text:?}");
        }
        for (name, value) in f["kwargs"].as_object().into_iter().flatten() {
            if let Some(n) = value.as_u64() {
                assert!(text.contains(&n.to_string()), "{id}: {name} = {n} is not in {text:?}");
            }
        }
    }
}
