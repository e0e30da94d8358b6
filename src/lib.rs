pub use tulip_selectors as selectors;
