// placeholder
export default null;
